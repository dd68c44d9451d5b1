"""The staff actions a user may take on a request now (the buttons the admin change page shows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from dsr_requests.clock import extension_window_closes
from dsr_requests.models import (
    EmailStatus,
    IdentityStep,
    RequestType,
)
from dsr_requests.services.statutory import _fulfilment_running
from dsr_requests.states import ALLOWED_TRANSITIONS, FINAL_STATES, S, outstanding_identity_steps

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django_stubs_ext import StrOrPromise

    from dsr_requests.models import RightsRequest


@dataclass(frozen=True)
class StaffAction:
    """An action staff can take on a request now; ``text`` names the field it needs, if any."""

    name: str
    label: StrOrPromise
    permission: str
    text: str = ""


STAFF_ACTIONS = (
    StaffAction("document_passed", _("Identity document accepted"), "verify_identity", text="note"),
    StaffAction("document_failed", _("Identity document not accepted"), "verify_identity", text="note"),
    StaffAction(
        "agent_permission_passed", _("Agent's written permission accepted"), "verify_identity", text="note"
    ),
    StaffAction(
        "agent_permission_failed",
        _("Agent's written permission not accepted"),
        "verify_identity",
        text="note",
    ),
    StaffAction("approve", _("Approve"), "approve_request"),
    StaffAction("approve_erasure", _("Give second approval of the erasure"), "approve_erasure"),
    StaffAction("start_fulfilment", _("Start fulfilment"), "fulfil_request"),
    StaffAction("complete", _("Mark completed"), "fulfil_request"),
    StaffAction("put_on_hold", _("Put on hold: ask the requester"), "hold_request", text="message"),
    StaffAction("resume", _("Resume"), "hold_request"),
    StaffAction("extend_deadline", _("Extend the deadline"), "extend_deadline", text="reason"),
    StaffAction("reject", _("Reject"), "reject_request", text="reason"),
    StaffAction("retry_emails", _("Send failed emails again"), "hold_request"),
)


def available_actions(rights_request: RightsRequest, user: User) -> list[StaffAction]:
    """The staff actions ``user`` may take on ``rights_request`` as it stands; the admin shows only these.

    The services enforce the same rules again under the row lock; this only decides which buttons to show.
    """
    state = rights_request.state
    targets = ALLOWED_TRANSITIONS[state]
    is_delete = rights_request.request_type == RequestType.DELETE
    document_open = state == S.VERIFYING and any(
        IdentityStep.DOCUMENT in group for group in outstanding_identity_steps(rights_request)
    )
    agent_check_open = state in (S.SUBMITTED, S.VERIFYING, S.ON_HOLD) and any(
        IdentityStep.AGENT_PERMISSION in group for group in outstanding_identity_steps(rights_request)
    )
    possible = {
        "document_passed": document_open,
        "document_failed": document_open,
        "agent_permission_passed": agent_check_open,
        "agent_permission_failed": agent_check_open,
        "approve": state == S.IN_REVIEW,
        "approve_erasure": is_delete
        and state == S.APPROVED
        and not rights_request.erasure_approved_by_id
        and rights_request.approved_by_id != user.pk,
        "start_fulfilment": state == S.APPROVED
        and (not is_delete or bool(rights_request.erasure_approved_by_id)),
        "complete": S.COMPLETED in targets and not _fulfilment_running(rights_request),
        "put_on_hold": S.ON_HOLD in targets,
        "resume": state == S.ON_HOLD,
        "extend_deadline": state not in FINAL_STATES
        and not rights_request.extended_at
        and rights_request.email_confirmed_at is not None
        and timezone.localdate() <= extension_window_closes(rights_request),
        "reject": S.REJECTED in targets,
        "retry_emails": rights_request.emails.filter(status=EmailStatus.FAILED).exists(),
    }
    return [
        action
        for action in STAFF_ACTIONS
        if possible[action.name] and user.has_perm(f"dsr_requests.{action.permission}")
    ]
