"""Every write to rights requests: submission, confirmation, identity proof, withdrawal, closing.

Services take keyword-only arguments and an ``actor``: a staff ``User``, or ``REQUESTER`` / ``SYSTEM`` for
the person behind the status page and for scheduled jobs. Each state change goes through
``_transition``, which checks the allowed-transitions table against a row locked with
``select_for_update`` and writes one ``RequestEvent``, so two people acting at once cannot both succeed.
"""

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from dsr_requests.models import RequestEvent, RequestState, RightsRequest

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
    rights_request.save(update_fields=["state", "held_from_state", "updated_at"])
    return _event(rights_request, actor=actor, note=note, public=public, from_state=from_state)


@transaction.atomic
def transition(rights_request, *, to_state, actor, note="", public=True):
    """Lock the request, change its state and record the event; returns the locked, updated request."""
    locked = _lock(rights_request)
    _transition(locked, to_state=to_state, actor=actor, note=note, public=public)
    return locked
