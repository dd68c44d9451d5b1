"""Statutory dates seen from a staff action: whether an action is late and must be confirmed (the date
that applies now is ``dsr_requests/clock.py``'s), and which request types include the processing register.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from dsr_requests.clock import (
    days_past_statutory_date,
    statutory_due_now,
)
from dsr_requests.models import (
    FulfilmentRun,
    RequestType,
)
from dsr_requests.services._base import ActionRefused, _event

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from dsr_requests.models import RightsRequest
    from dsr_requests.states import Actor


def _fulfilment_running(rights_request: RightsRequest) -> bool:
    """Whether a background fulfilment job is under way for this request."""
    return FulfilmentRun.objects.filter(request=rights_request, status=FulfilmentRun.Status.RUNNING).exists()


# The staff actions that refuse or answer a request, so need confirming after the statutory date.
LATE_CONFIRMED_ACTIONS = ("reject", "start_fulfilment", "complete")


class LateActionNotConfirmed(ActionRefused):
    """A refusal or answer after the statutory date that staff have not confirmed; nothing was done."""


def _confirm_if_late(locked: RightsRequest, *, acknowledge_late: bool, action: StrOrPromise) -> int:
    """Refuse an action past the statutory date unless staff confirmed it; returns the days late."""
    late = days_past_statutory_date(locked)
    if late and not acknowledge_late:
        raise LateActionNotConfirmed(
            _(
                "%(reference)s is %(days)d days past its statutory date (%(date)s). %(action)s now is late: "
                "tick “I know this is late” on its page to go ahead; it will be recorded on the timeline. "
                "Nothing was done."
            )
            % {
                "reference": locked.reference,
                "days": late,
                "date": str(statutory_due_now(locked)),
                "action": action,
            }
        )
    return late


def _record_late(locked: RightsRequest, *, actor: Actor, late: int, action: StrOrPromise) -> None:
    """Put a late refusal or answer on the timeline (staff only), so the log shows it whoever looks."""
    if late:
        _event(
            locked,
            actor=actor,
            note=str(
                _("%(action)s %(days)d days after the statutory date (%(date)s).")
                % {"action": action, "days": late, "date": str(statutory_due_now(locked))}
            ),
            public=False,
        )


# Request types whose answer includes the processing register (GDPR / UK GDPR Art. 15(1)(a)-(h)).
REGISTER_TYPES = frozenset({RequestType.PROCESSING, RequestType.REVIEW, RequestType.COPY})


def require_processing_register(*, request_type: str) -> None:
    """Refuse to answer a processing, review or copy request while the processing register is empty
    (or an entry lacks a required part): the answer must describe the processing, never a placeholder."""
    from dsr_requests.models import ProcessingActivity

    if request_type not in REGISTER_TYPES:
        return
    activities = ProcessingActivity.objects.all()
    incomplete = activities.filter(
        Q(purposes="") | Q(data_categories="") | Q(legal_basis="") | Q(retention="")
    )
    if not activities.exists() or incomplete.exists():
        raise ActionRefused(
            _(
                "The processing register is empty or incomplete, and the answer to this request must "
                "describe how personal data is processed (GDPR Art. 15(1)). Fill in Rights requests → "
                "Processing register first (every entry needs purposes, data categories, legal basis and "
                "retention)."
            )
        )
