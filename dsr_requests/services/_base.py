"""The base every service module stands on: row locks, events, state transitions with their clock upkeep
(due dates, holds), the background-task registry, and the checks each staff action starts with.

``_transition`` checks the allowed-transitions table (``dsr_requests/states.py``) against a row locked
with ``select_for_update`` and writes one ``RequestEvent``, so two people acting at once cannot both
succeed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from dsr_requests import deadlines, rollup
from dsr_requests.clock import statutory_clock_stops as _statutory_clock_stops
from dsr_requests.models import (
    RequestEvent,
    RequestState,
    RightsRequest,
)
from dsr_requests.states import ALLOWED_TRANSITIONS, FINAL_STATES, REQUESTER, SYSTEM, S

if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from django.contrib.auth.models import User
    from django_stubs_ext import StrOrPromise

    from dsr_requests.states import Actor

logger = logging.getLogger("dsr_requests.services")  # one name for the whole package, as before the split


class ActionRefused(Exception):
    """An action that cannot be done now (requester or staff); the message says why, for the page to show."""


class InvalidTransition(Exception):
    """A state change the workflow does not allow; nothing was changed."""

    def __init__(self, rights_request: RightsRequest, to_state: str) -> None:
        self.from_state = rights_request.state
        self.to_state = to_state
        super().__init__(
            _("A request that is “%(from)s” cannot become “%(to)s”.")
            % {"from": RequestState(self.from_state).label, "to": RequestState(to_state).label}
        )


# The background jobs the services hand work to, by name. tasks.py defines them over the services (tasks
# import services, never the other way round) and DsrRequestsConfig.ready registers them here.
_background_tasks: dict[str, Any] = {}


def register_background_task(name: str, task: Any) -> None:
    """Make ``task`` (a django-tasks task) the one the services enqueue under ``name``."""
    _background_tasks[name] = task


def background_task(name: str) -> Any:
    """The task registered under ``name``; KeyError before the app registry is ready."""
    return _background_tasks[name]


def _actor_fields(actor: Actor) -> tuple[User | None, RequestEvent.ActorKind]:
    """Split an ``actor`` argument into the event's (user, actor_kind)."""
    if actor in (REQUESTER, SYSTEM):
        return None, RequestEvent.ActorKind(actor)
    if actor is None or not getattr(actor, "is_authenticated", False):
        raise ValueError("actor must be a staff user, REQUESTER or SYSTEM")
    return cast("User", actor), RequestEvent.ActorKind.STAFF


def _lock(rights_request: RightsRequest | int) -> RightsRequest:
    """Re-read a request (given as an instance or a primary key) under a row lock; call inside
    ``transaction.atomic()``.

    The one place a rights request is locked for update, so every writer takes the same lock the same way.
    """
    pk = rights_request if isinstance(rights_request, int) else rights_request.pk
    return RightsRequest.objects.select_for_update().get(pk=pk)


def _event(
    rights_request: RightsRequest,
    *,
    actor: Actor,
    note: StrOrPromise = "",
    public: bool = True,
    from_state: str | None = None,
    to_state: str | None = None,
) -> RequestEvent:
    """Write one event row; a note without a state change has from_state == to_state.

    Every state change (a new request, every transition) is recorded here, so this is where the
    dashboard's counts follow it (``rollup``).
    """
    user, kind = _actor_fields(actor)
    event = RequestEvent.objects.create(
        request=rights_request,
        from_state=rights_request.state if from_state is None else from_state,
        to_state=to_state or rights_request.state,
        actor=user,
        actor_kind=kind,
        note=str(note),
        public=public,
    )
    rollup.state_changed(rights_request, from_state=event.from_state, to_state=event.to_state)
    return event


def _transition(
    rights_request: RightsRequest,
    *,
    to_state: str,
    actor: Actor,
    note: StrOrPromise = "",
    public: bool = True,
) -> RequestEvent:
    """Move a locked request to ``to_state`` if the table allows it, and record the event.

    The caller holds the row lock (``_lock``) inside ``transaction.atomic()``. Going on hold remembers the
    state to return to; leaving on_hold for a working state only goes back to that state.
    """
    from_state = rights_request.state
    to_state = RequestState(to_state)
    allowed = to_state in ALLOWED_TRANSITIONS[from_state]
    if from_state == S.ON_HOLD and to_state in (S.VERIFYING, S.IN_REVIEW, S.APPROVED):
        allowed = to_state == rights_request.held_from_state
    if not allowed:
        raise InvalidTransition(rights_request, to_state)
    if to_state == S.ON_HOLD and rights_request.hold_reason not in deadlines.HoldReason.values:
        raise ValueError("set hold_reason before putting a request on hold")
    rights_request.held_from_state = from_state if to_state == S.ON_HOLD else ""
    rights_request.state = to_state
    clock_fields, hold_summary = _track_clock(rights_request, from_state=from_state, to_state=to_state)
    rights_request.save(update_fields=["state", "held_from_state", "updated_at", *clock_fields])
    event = _event(rights_request, actor=actor, note=note, public=public, from_state=from_state)
    if hold_summary:
        # Staff see why each date moved (or did not): the reason decides whether the legal clock stopped.
        _event(rights_request, actor=SYSTEM, note=hold_summary, public=False)
    return event


@transaction.atomic
def transition(
    *,
    rights_request: RightsRequest,
    to_state: str,
    actor: Actor,
    note: StrOrPromise = "",
    public: bool = True,
    hold_reason: str = "",
) -> RightsRequest:
    """Lock the request, change its state and record the event; returns the locked, updated request.

    Going on hold needs ``hold_reason`` (a ``HoldReason``): it decides whether the legal clock stops.
    """
    locked = _lock(rights_request)
    if to_state == S.ON_HOLD:
        locked.hold_reason = hold_reason
    _transition(locked, to_state=to_state, actor=actor, note=note, public=public)
    return locked


def initial_deadline_fields(*, received_at: datetime, country: str) -> dict[str, Any]:
    """Regime (from the requester's country) and due dates of a request received at ``received_at``."""
    probe = RightsRequest(received_at=received_at, regime=deadlines.regime_for_country(country))
    probe.apply_due_dates()
    return {
        "regime": probe.regime,
        "policy_due_on": probe.policy_due_on,
        "statutory_due_on": probe.statutory_due_on,
        "effective_due_on": probe.effective_due_on,
    }


def _track_clock(rights_request: RightsRequest, *, from_state: str, to_state: str) -> tuple[list[str], str]:
    """Stop the clock on hold, restart it (moving the due dates) on leaving hold, stamp closing.

    Called by ``_transition`` before it saves, so every way in and out of on_hold (staff, requester,
    system) keeps the deadlines right. Every hold moves the policy date by its working days; only a hold
    whose reason stops the legal clock (identity, clarification) counts towards the statutory date.
    Returns the extra fields to save, and on leaving hold a note for staff saying how the dates moved.
    """
    now = timezone.now()
    fields, summary = [], ""
    if to_state == S.ON_HOLD:
        rights_request.held_since = now
        fields += ["held_since", "hold_reason"]
    elif from_state == S.ON_HOLD:
        held_on, resumed_on = timezone.localdate(rights_request.held_since), timezone.localdate(now)
        working = deadlines.working_days_between(held_on, resumed_on)
        reason = deadlines.HoldReason(rights_request.hold_reason)
        stopped = _statutory_clock_stops(rights_request.regime, reason)
        rights_request.hold_working_days += working
        if reason.stops_statutory_clock:
            # Kept whatever the regime, so a later regime change recomputes the dates correctly.
            rights_request.hold_calendar_days += (resumed_on - held_on).days
        rights_request.held_since = None
        rights_request.hold_reason = ""
        fields += [
            "held_since",
            "hold_reason",
            "hold_working_days",
            "hold_calendar_days",
            *rights_request.apply_due_dates(),
        ]
        summary = _hold_summary(rights_request, reason=reason, working=working, stopped=stopped)
    if to_state in FINAL_STATES:
        rights_request.closed_at = now
        fields.append("closed_at")
    return fields, summary


def _hold_summary(
    rights_request: RightsRequest, *, reason: deadlines.HoldReason, working: int, stopped: bool
) -> str:
    """The staff-only note on leaving hold: what the hold was for and which dates it moved."""
    values = {
        "reason": reason.label,
        "working": working,
        "policy": str(rights_request.policy_due_on),  # ISO dates, set just before by apply_due_dates
        "statutory": str(rights_request.statutory_due_on),
    }
    if stopped:
        return str(
            _(
                "Hold ended (%(reason)s): our date moved by %(working)d working days to %(policy)s; "
                "the legal "
                "clock stood still too, so the statutory date is now %(statutory)s."
            )
            % values
        )
    return str(
        _(
            "Hold ended (%(reason)s): our date moved by %(working)d working days to %(policy)s; "
            "this hold does "
            "not stop the legal clock under %(regime)s, so the statutory date stays %(statutory)s."
        )
        % {**values, "regime": rights_request.get_regime_display()}
    )


def _require(actor: Actor, permission: str) -> None:
    """Refuse unless ``actor`` is an active staff user holding ``dsr_requests.<permission>``."""
    if isinstance(actor, str) or not (
        getattr(actor, "is_authenticated", False) and actor.is_staff and actor.is_active
    ):
        raise PermissionDenied(_("Only staff can do this."))
    if not actor.has_perm(f"dsr_requests.{permission}"):
        raise PermissionDenied(_("You do not have permission to do this."))


def _lock_for_action(rights_request: RightsRequest, *, expected_state: str | None) -> RightsRequest:
    """Lock the request; refuse when it is no longer in the state the staff member saw."""
    locked = _lock(rights_request)
    if expected_state and locked.state != expected_state:
        raise ActionRefused(
            _("Request %(reference)s changed meanwhile: it is now “%(state)s”. Nothing was done.")
            % {"reference": locked.reference, "state": locked.get_state_display()}
        )
    return locked


def _required_text(value: str | None, message: StrOrPromise) -> str:
    """The stripped text, or ActionRefused with ``message`` when it is blank."""
    value = (value or "").strip()
    if not value:
        raise ActionRefused(message)
    return value


# The same checks for the staff services in the modules beside this one (staff_intake.py).
require_permission = _require
required_text = _required_text
