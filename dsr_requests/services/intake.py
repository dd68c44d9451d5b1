"""Intake: submitting a request, withdrawing it, reminding and closing requests whose address was never
confirmed, and re-sending lost status links.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from dsr_requests import emails, tokens
from dsr_requests.models import (
    Channel,
    RequestType,
    RightsRequest,
)
from dsr_requests.services._base import _event, _lock, _transition, initial_deadline_fields
from dsr_requests.services.identity import _drop_proof_material
from dsr_requests.services.outbox import queue_requester_email
from dsr_requests.states import REQUESTER, SYSTEM, S

if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from dsr_requests.states import Actor


def confirmation_max_age() -> int:
    """How long an email confirmation link stays valid, in seconds."""
    return settings.DSR_CONFIRMATION_MAX_AGE_HOURS * 3600


def _confirmation_email_context(rights_request: RightsRequest) -> dict[str, Any]:
    return {
        "confirm_url": emails.absolute_url(
            "dsr_requests:confirm", query={"token": tokens.confirmation_token(rights_request)}
        ),
        "hours": settings.DSR_CONFIRMATION_MAX_AGE_HOURS,
        "close_after_days": settings.DSR_CLOSE_UNVERIFIED_AFTER_DAYS,
    }


# The first timeline entry of a request, by the channel it came through.
RECEIVED_NOTES = {
    Channel.WEB: _("Request received"),
    Channel.EMAIL: _("Request received by email, logged by staff"),
    Channel.POST: _("Request received by post, logged by staff"),
    Channel.PHONE: _("Request received by phone, logged by staff"),
}


@sensitive_variables("name", "email", "details", "transfer_email", "site_url", "agent_name", "agent_email")
def submit_request(
    *,
    request_type: str,
    name: str,
    email: str,
    details: str = "",
    site_url: str = "",
    concerns: str = "",
    transfer_to: str = "",
    transfer_email: str = "",
    country: str = "",
    actor: Actor = REQUESTER,
    now: datetime | None = None,
    channel: str = Channel.WEB,
    received_at: datetime | None = None,
    agent_name: str = "",
    agent_email: str = "",
) -> RightsRequest:
    """Store a new request (state ``submitted``) and email the link that confirms the address.

    The reference is random; a clash with an existing one (about one in 10^8 per pair) is retried.
    A request staff log from another channel (``staff_intake.log_request``) passes its ``channel`` and
    the moment it was ``received_at``, which starts every clock; a request made by an authorized agent
    names the agent (``agent_name``, ``agent_email``), who is sent nothing: every email goes to the
    requester's own address.
    """
    now = now or timezone.now()
    received_at = received_at or now
    channel = Channel(channel)
    for _attempt in range(5):
        reference = tokens.new_reference()
        try:
            with transaction.atomic():
                rights_request = RightsRequest.objects.create(
                    reference=reference,
                    request_type=RequestType(request_type),
                    name=name,
                    email=email,
                    email_hash=tokens.email_blind_index(email),
                    details=details,
                    site_url=site_url,
                    concerns=concerns,
                    transfer_to=transfer_to,
                    transfer_email=transfer_email,
                    country=country,
                    received_at=received_at,
                    channel=channel,
                    by_agent=bool(agent_name),
                    agent_name=agent_name,
                    agent_email=agent_email,
                    **initial_deadline_fields(received_at=received_at, country=country),
                )
                _event(
                    rights_request,
                    actor=actor,
                    note=RECEIVED_NOTES[channel],
                    from_state="",
                    to_state=S.SUBMITTED,
                )
                if agent_name:
                    _event(
                        rights_request,
                        actor=actor,
                        note=_(
                            "Made on your behalf by an authorized agent. You confirm your email address and "
                            "prove your identity yourself; we check the agent's written permission."
                        ),
                    )
                queue_requester_email(
                    rights_request=rights_request,
                    event="received",
                    **_confirmation_email_context(rights_request),
                )
                return rights_request
        except IntegrityError:
            if not RightsRequest.objects.filter(reference=reference).exists():
                raise
    raise RuntimeError("could not find a free request reference")


def withdraw(*, rights_request: RightsRequest, actor: Actor = REQUESTER) -> RightsRequest:
    """Withdraw a request at the requester's wish and tell them by email."""
    with transaction.atomic():
        locked = _lock(rights_request)
        _transition(locked, to_state=S.WITHDRAWN, actor=actor, note=_("Withdrawn by the requester"))
        _drop_proof_material(locked)
        if locked.email_confirmed_at:  # an unconfirmed address gets nothing but its confirmation link
            queue_requester_email(rights_request=locked, event="withdrawn")
        return locked


def send_confirmation_reminders(*, now: datetime | None = None) -> int:
    """Send the one reminder to requests unconfirmed for DSR_REMINDER_AFTER_DAYS; returns how many."""
    now = now or timezone.now()
    # Counted from when the confirmation link was first sent (the row's creation), not from receipt: a
    # request received by post a week ago and logged today has had its link for no time at all.
    due = RightsRequest.objects.filter(
        state=S.SUBMITTED,
        reminder_sent_at__isnull=True,
        created_at__lte=now - timedelta(days=settings.DSR_REMINDER_AFTER_DAYS),
        created_at__gt=now - timedelta(days=settings.DSR_CLOSE_UNVERIFIED_AFTER_DAYS),
    )
    sent = 0
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            locked = _lock(pk)
            if locked.state != S.SUBMITTED or locked.reminder_sent_at:
                continue
            locked.reminder_sent_at = now
            locked.save(update_fields=["reminder_sent_at", "updated_at"])
            queue_requester_email(
                rights_request=locked, event="confirm_reminder", **_confirmation_email_context(locked)
            )
            sent += 1
    return sent


def close_unverified_requests(*, now: datetime | None = None, actor: Actor = SYSTEM) -> int:
    """Close requests unconfirmed for DSR_CLOSE_UNVERIFIED_AFTER_DAYS and erase their personal data.

    Nobody proved the address was theirs, so nothing is kept that could identify anyone: only the
    reference, type, dates and the event history remain.
    """
    now = now or timezone.now()
    stale = RightsRequest.objects.filter(
        state=S.SUBMITTED, created_at__lte=now - timedelta(days=settings.DSR_CLOSE_UNVERIFIED_AFTER_DAYS)
    )
    closed = 0
    for pk in stale.values_list("pk", flat=True):
        with transaction.atomic():
            locked = _lock(pk)
            if locked.state != S.SUBMITTED:
                continue
            _transition(
                locked,
                to_state=S.CLOSED_UNVERIFIED,
                actor=actor,
                note=_("Closed: the email address was never confirmed"),
            )
            _erase_personal_data(locked)
            closed += 1
    return closed


def _erase_personal_data(locked: RightsRequest) -> None:
    """Blank every field that could identify the requester, and their emails and proof material."""
    # Never confirmed, so never proved: the blind index goes too (the account fields are empty before the
    # email is confirmed, as the account proof comes after).
    for field in (*RightsRequest.PERSONAL_FIELDS, "email_hash"):
        setattr(locked, field, "")
    locked.save()
    _drop_proof_material(locked)
    locked.questions.all().delete()
    locked.emails.update(to="", body_text="", body_html="")
