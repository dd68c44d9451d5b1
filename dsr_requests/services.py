"""Every write to rights requests: submission, confirmation, identity proof, withdrawal, closing.

Services take keyword-only arguments and an ``actor``: a staff ``User``, or ``REQUESTER`` / ``SYSTEM`` for
the person behind the status page and for scheduled jobs. Each state change goes through
``_transition``, which checks the allowed-transitions table against a row locked with
``select_for_update`` and writes one ``RequestEvent``, so two people acting at once cannot both succeed.
"""

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from dsr_requests import deadlines
from dsr_requests.models import RequestEvent, RequestState, RequestType, RightsRequest, StaffQuestion

S = RequestState
REQUESTER = RequestEvent.ActorKind.REQUESTER
SYSTEM = RequestEvent.ActorKind.SYSTEM

# Where each state may go. Leaving on_hold is only allowed back to the state it was held from (checked
# in _transition), or out through one of the exits listed here.
ALLOWED_TRANSITIONS = {
    S.SUBMITTED: {S.VERIFYING, S.WITHDRAWN, S.CLOSED_UNVERIFIED},
    S.VERIFYING: {S.IN_REVIEW, S.ON_HOLD, S.REJECTED, S.WITHDRAWN},
    S.IN_REVIEW: {S.APPROVED, S.ON_HOLD, S.REJECTED, S.WITHDRAWN},
    S.APPROVED: {S.FULFILLING, S.ON_HOLD, S.REJECTED, S.WITHDRAWN},
    S.FULFILLING: {S.COMPLETED},
    S.ON_HOLD: {S.VERIFYING, S.IN_REVIEW, S.APPROVED, S.REJECTED, S.WITHDRAWN},
    S.COMPLETED: set(),
    S.REJECTED: set(),
    S.WITHDRAWN: set(),
    S.CLOSED_UNVERIFIED: set(),
}
OPEN_STATES = frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if targets)


class InvalidTransition(Exception):
    """A state change the workflow does not allow; nothing was changed."""

    def __init__(self, rights_request, to_state):
        self.from_state = rights_request.state
        self.to_state = to_state
        super().__init__(
            _("A request that is “%(from)s” cannot become “%(to)s”.")
            % {"from": RequestState(self.from_state).label, "to": RequestState(to_state).label}
        )


def _actor_fields(actor):
    """Split an ``actor`` argument into the event's (user, actor_kind)."""
    if actor in (REQUESTER, SYSTEM):
        return None, RequestEvent.ActorKind(actor)
    if actor is None or not getattr(actor, "is_authenticated", False):
        raise ValueError("actor must be a staff user, REQUESTER or SYSTEM")
    return actor, RequestEvent.ActorKind.STAFF


def _lock(rights_request):
    """Re-read a request under a row lock; call inside ``transaction.atomic()``."""
    return RightsRequest.objects.select_for_update().get(pk=rights_request.pk)


def _event(rights_request, *, actor, note="", public=True, from_state=None, to_state=None):
    """Write one event row; a note without a state change has from_state == to_state."""
    user, kind = _actor_fields(actor)
    return RequestEvent.objects.create(
        request=rights_request,
        from_state=rights_request.state if from_state is None else from_state,
        to_state=to_state or rights_request.state,
        actor=user,
        actor_kind=kind,
        note=note,
        public=public,
    )


def _transition(rights_request, *, to_state, actor, note="", public=True):
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
    rights_request.held_from_state = from_state if to_state == S.ON_HOLD else ""
    rights_request.state = to_state
    clock_fields = _track_clock(rights_request, from_state=from_state, to_state=to_state)
    rights_request.save(update_fields=["state", "held_from_state", "updated_at", *clock_fields])
    return _event(rights_request, actor=actor, note=note, public=public, from_state=from_state)


@transaction.atomic
def transition(rights_request, *, to_state, actor, note="", public=True):
    """Lock the request, change its state and record the event; returns the locked, updated request."""
    locked = _lock(rights_request)
    _transition(locked, to_state=to_state, actor=actor, note=note, public=public)
    return locked


# =====================================================================================================
# Staff workflow: deadlines, holds, extensions, and one function per staff action.
#
# Each action checks the actor's permission (the roles are groups of these permissions), locks the row,
# refuses what the rules do not allow with InvalidTransition / ActionRefused / PermissionDenied before
# changing anything, writes one event, and queues any requester email in the same transaction, so of two
# staff acting at once exactly one succeeds and exactly one email goes out.
# =====================================================================================================

FINAL_STATES = frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if not targets)
HOLDABLE_STATES = frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if S.ON_HOLD in targets)


class ActionRefused(Exception):
    """A staff action the rules refuse (no reason given, too late to extend, ...); nothing was changed."""


def apply_due_dates(rights_request):
    """Set the stored due dates from receipt, regime, completed holds and extension; does not save.

    Returns the names of the fields it set, for ``save(update_fields=...)``. Call it on receipt and
    whenever one of those inputs changes; lists, filters and the digest read only the stored columns.
    """
    received_on = timezone.localdate(rights_request.received_at)
    policy = deadlines.policy_due_date(
        received_on,
        extra_working_days=rights_request.hold_working_days + rights_request.extension_working_days,
    )
    statutory = deadlines.statutory_due_date(
        received_on,
        regime=rights_request.regime,
        extra_calendar_days=rights_request.hold_calendar_days + rights_request.extension_calendar_days,
    )
    rights_request.policy_due_on = policy
    rights_request.statutory_due_on = statutory
    rights_request.effective_due_on = min(policy, statutory)
    return ["policy_due_on", "statutory_due_on", "effective_due_on"]


def _track_clock(rights_request, *, from_state, to_state):
    """Stop the clock on hold, restart it (moving the due dates) on leaving hold, stamp closing.

    Called by ``_transition`` before it saves, so every way in and out of on_hold (staff, requester,
    system) keeps the deadlines right. Returns the extra fields to save.
    """
    now = timezone.now()
    fields = []
    if to_state == S.ON_HOLD:
        rights_request.held_since = now
        fields.append("held_since")
    elif from_state == S.ON_HOLD:
        held_on, resumed_on = timezone.localdate(rights_request.held_since), timezone.localdate(now)
        rights_request.hold_working_days += deadlines.working_days_between(held_on, resumed_on)
        rights_request.hold_calendar_days += (resumed_on - held_on).days
        rights_request.held_since = None
        fields += ["held_since", "hold_working_days", "hold_calendar_days", *apply_due_dates(rights_request)]
    if to_state in FINAL_STATES:
        rights_request.closed_at = now
        fields.append("closed_at")
    return fields


def _require(actor, permission):
    """Refuse unless ``actor`` is an active staff user holding ``dsr_requests.<permission>``."""
    if not (getattr(actor, "is_authenticated", False) and actor.is_staff and actor.is_active):
        raise PermissionDenied(_("Only staff can do this."))
    if not actor.has_perm(f"dsr_requests.{permission}"):
        raise PermissionDenied(_("You do not have permission to do this."))


def _lock_for_action(rights_request, *, expected_state):
    """Lock the request; refuse when it is no longer in the state the staff member saw."""
    locked = _lock(rights_request)
    if expected_state and locked.state != expected_state:
        raise ActionRefused(
            _("Request %(reference)s changed meanwhile: it is now “%(state)s”. Nothing was done.")
            % {"reference": locked.reference, "state": locked.get_state_display()}
        )
    return locked


def _required_text(value, message):
    """The stripped text, or ActionRefused with ``message`` when it is blank."""
    value = (value or "").strip()
    if not value:
        raise ActionRefused(message)
    return value


def _notify_requester(rights_request, event, **context):
    """Queue the requester email for ``event`` in the current transaction (it is sent after commit)."""
    queue_requester_email(rights_request, event=event, **context)


@transaction.atomic
def put_on_hold(rights_request, *, actor, message, expected_state=None):
    """Ask the requester for something and stop the clock until they answer or staff resume."""
    _require(actor, "hold_request")
    message = _required_text(message, _("Say what the requester needs to send or answer."))
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    _transition(locked, to_state=S.ON_HOLD, actor=actor, note=message, public=True)
    StaffQuestion.objects.create(request=locked, question=message, asked_by=actor)
    _notify_requester(locked, "more_information", question=message)
    return locked


@transaction.atomic
def resume(rights_request, *, actor, note="", expected_state=S.ON_HOLD):
    """Take a request off hold, back to the state it was held from; the due dates move by the hold."""
    _require(actor, "hold_request")
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if locked.state != S.ON_HOLD:
        raise InvalidTransition(locked, locked.state)
    _transition(locked, to_state=locked.held_from_state, actor=actor, note=note, public=False)
    return locked


@transaction.atomic
def reject(rights_request, *, actor, reason, expected_state=None):
    """Refuse the request; the reason is recorded and sent to the requester."""
    _require(actor, "reject_request")
    reason = _required_text(reason, _("A rejection needs a reason; it is sent to the requester."))
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    locked.rejection_reason = reason
    _transition(locked, to_state=S.REJECTED, actor=actor, note=reason, public=True)
    locked.save(update_fields=["rejection_reason"])
    _notify_requester(locked, "rejected", reason=reason)
    return locked


@transaction.atomic
def approve(rights_request, *, actor, note="", expected_state=None):
    """Approve a reviewed request so it can be fulfilled."""
    _require(actor, "approve_request")
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    locked.approved_by = actor
    _transition(locked, to_state=S.APPROVED, actor=actor, note=note, public=True)
    locked.save(update_fields=["approved_by"])
    return locked


@transaction.atomic
def approve_erasure(rights_request, *, actor, note="", expected_state=S.APPROVED):
    """Give the second approval an erasure needs, from someone other than the first approver."""
    _require(actor, "approve_erasure")
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if locked.request_type != RequestType.DELETE or locked.state != S.APPROVED:
        raise ActionRefused(_("Only an approved deletion request takes a second approval."))
    if locked.erasure_approved_by_id:
        raise ActionRefused(_("This erasure already has its second approval."))
    if locked.approved_by_id == actor.pk:
        raise ActionRefused(_("The second approval must come from someone other than the first approver."))
    locked.erasure_approved_by = actor
    locked.save(update_fields=["erasure_approved_by", "updated_at"])
    _event(
        locked, actor=actor, note=note or str(_("Erasure approved by a second staff member.")), public=False
    )
    return locked


@transaction.atomic
def start_fulfilment(rights_request, *, actor, note="", expected_state=S.APPROVED):
    """Start carrying out an approved request (an erasure only after its second approval)."""
    _require(actor, "fulfil_request")
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if locked.request_type == RequestType.DELETE and not locked.erasure_approved_by_id:
        raise ActionRefused(_("An erasure needs a second staff member's approval first."))
    _transition(locked, to_state=S.FULFILLING, actor=actor, note=note, public=True)
    return locked


@transaction.atomic
def complete(rights_request, *, actor, note="", expected_state=S.FULFILLING):
    """Record that the request has been carried out, and tell the requester."""
    _require(actor, "fulfil_request")
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    _transition(locked, to_state=S.COMPLETED, actor=actor, note=note, public=True)
    _notify_requester(locked, "completed")
    return locked


def extension_window_closes(rights_request):
    """The last day an extension may be granted: the end of the first statutory period, holds included."""
    return deadlines.statutory_due_date(
        timezone.localdate(rights_request.received_at),
        regime=rights_request.regime,
        extra_calendar_days=rights_request.hold_calendar_days,
    )


@transaction.atomic
def extend_deadline(rights_request, *, actor, reason, months=None, expected_state=None):
    """Extend the time limit once, within the law's limits and window; the requester is told why.

    GDPR and UK GDPR: one or two further months, granted within the first month. CCPA: one further 45
    days (``months`` must be None), granted within the first 45 days. Both due dates move.
    """
    _require(actor, "extend_deadline")
    reason = _required_text(reason, _("An extension needs a reason; it is sent to the requester."))
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if locked.state in FINAL_STATES:
        raise ActionRefused(_("A closed request cannot be extended."))
    if locked.extended_at:
        raise ActionRefused(_("This request has already been extended."))
    if timezone.localdate() > extension_window_closes(locked):
        raise ActionRefused(
            _("Too late: a %(regime)s extension must be made by %(date)s.")
            % {"regime": locked.get_regime_display(), "date": extension_window_closes(locked).isoformat()}
        )
    try:
        allowance = deadlines.extension_allowance(
            timezone.localdate(locked.received_at), regime=locked.regime, months=months
        )
    except ValueError as exc:
        raise ActionRefused(str(exc)) from None
    locked.extended_at = timezone.now()
    locked.extension_calendar_days = allowance.calendar_days
    locked.extension_working_days = allowance.working_days
    locked.extension_reason = reason
    fields = apply_due_dates(locked)
    locked.save(
        update_fields=[
            "extended_at",
            "extension_calendar_days",
            "extension_working_days",
            "extension_reason",
            "updated_at",
            *fields,
        ]
    )
    _event(locked, actor=actor, note=reason, public=True)
    _notify_requester(locked, "extended", reason=reason, due_on=locked.effective_due_on)
    return locked


@transaction.atomic
def change_regime(rights_request, *, actor, regime, expected_state=None):
    """Set the regime staff decided applies, and recompute the statutory date from it."""
    _require(actor, "extend_deadline")
    regime = RightsRequest.Regime(regime)
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if locked.state in FINAL_STATES:
        raise ActionRefused(_("A closed request keeps the regime it was answered under."))
    if locked.extended_at:
        raise ActionRefused(_("The regime cannot change after an extension granted under it."))
    if locked.regime == regime:
        return locked
    previous = locked.get_regime_display()
    locked.regime = regime
    fields = apply_due_dates(locked)
    locked.save(update_fields=["regime", "updated_at", *fields])
    _event(
        locked,
        actor=actor,
        note=str(_("Regime changed from %(old)s to %(new)s.") % {"old": previous, "new": regime.label}),
        public=False,
    )
    return locked


@transaction.atomic
def assign(rights_request, *, actor, assignee):
    """Give the request to a staff member (or to nobody, with ``assignee=None``)."""
    _require(actor, "assign_request")
    if assignee is not None and not (assignee.is_staff and assignee.is_active):
        raise ActionRefused(_("Requests can only be assigned to active staff."))
    locked = _lock(rights_request)
    if locked.assignee_id == getattr(assignee, "pk", None):
        return locked
    locked.assignee = assignee
    locked.save(update_fields=["assignee", "updated_at"])
    who = assignee.get_username() if assignee else str(_("nobody"))
    _event(locked, actor=actor, note=str(_("Assigned to %(who)s.") % {"who": who}), public=False)
    return locked


@dataclass(frozen=True)
class StaffAction:
    """An action staff can take on a request now; ``text`` names the field it needs, if any."""

    name: str
    label: str
    permission: str
    text: str = ""


STAFF_ACTIONS = (
    StaffAction("approve", _("Approve"), "approve_request"),
    StaffAction("approve_erasure", _("Give second approval of the erasure"), "approve_erasure"),
    StaffAction("start_fulfilment", _("Start fulfilment"), "fulfil_request"),
    StaffAction("complete", _("Mark completed"), "fulfil_request"),
    StaffAction("put_on_hold", _("Put on hold: ask the requester"), "hold_request", text="message"),
    StaffAction("resume", _("Resume"), "hold_request"),
    StaffAction("extend_deadline", _("Extend the deadline"), "extend_deadline", text="reason"),
    StaffAction("reject", _("Reject"), "reject_request", text="reason"),
)


def available_actions(rights_request, user):
    """The staff actions ``user`` may take on ``rights_request`` as it stands; the admin shows only these.

    The services enforce the same rules again under the row lock; this only decides which buttons to show.
    """
    state = rights_request.state
    targets = ALLOWED_TRANSITIONS[state]
    is_delete = rights_request.request_type == RequestType.DELETE
    possible = {
        "approve": S.APPROVED in targets and state != S.ON_HOLD,
        "approve_erasure": is_delete
        and state == S.APPROVED
        and not rights_request.erasure_approved_by_id
        and rights_request.approved_by_id != user.pk,
        "start_fulfilment": state == S.APPROVED
        and (not is_delete or bool(rights_request.erasure_approved_by_id)),
        "complete": S.COMPLETED in targets,
        "put_on_hold": S.ON_HOLD in targets,
        "resume": state == S.ON_HOLD,
        "extend_deadline": state not in FINAL_STATES
        and not rights_request.extended_at
        and timezone.localdate() <= extension_window_closes(rights_request),
        "reject": S.REJECTED in targets,
    }
    return [
        action
        for action in STAFF_ACTIONS
        if possible[action.name] and user.has_perm(f"dsr_requests.{action.permission}")
    ]
