"""The request state machine: the states, where each may go, which are open or final, who acts, and what
a request must have proved before it leaves ``verifying``.

The bottom of the app's own modules (it imports only the models): services enforce it, selectors,
admin, metrics and tasks read it, and nothing here imports them back. Who may take which staff action
is the permission each staff service checks; the roles that hold those permissions are in ``roles.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from django.conf import settings

from dsr_requests.models import CheckOutcome, IdentityStep, RequestEvent, RequestState

if TYPE_CHECKING:
    from dsr_requests.models import RightsRequest

if TYPE_CHECKING:
    from django.contrib.auth.models import User

S = RequestState
# Who acts, besides a staff user: the person behind the status page, and scheduled jobs.
REQUESTER = RequestEvent.ActorKind.REQUESTER
SYSTEM = RequestEvent.ActorKind.SYSTEM
# The ``actor=`` of every service: a staff user, or REQUESTER / SYSTEM.
Actor: TypeAlias = "User | str"

# Where each state may go. Leaving on_hold is only allowed back to the state it was held from (checked
# in services' _transition), or out through one of the exits listed here.
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.SUBMITTED: {S.VERIFYING, S.WITHDRAWN, S.CLOSED_UNVERIFIED},
    S.VERIFYING: {S.IN_REVIEW, S.ON_HOLD, S.REJECTED, S.WITHDRAWN},
    S.IN_REVIEW: {S.APPROVED, S.ON_HOLD, S.REJECTED, S.WITHDRAWN},
    S.APPROVED: {S.FULFILLING, S.ON_HOLD, S.REJECTED, S.WITHDRAWN},
    S.FULFILLING: {S.COMPLETED, S.APPROVED},  # back to approved: the job failed, staff decide
    S.ON_HOLD: {S.VERIFYING, S.IN_REVIEW, S.APPROVED, S.REJECTED, S.WITHDRAWN},
    S.COMPLETED: set(),
    S.REJECTED: set(),
    S.WITHDRAWN: set(),
    S.CLOSED_UNVERIFIED: set(),
}
OPEN_STATES = frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if targets)
FINAL_STATES = frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if not targets)


def required_identity_steps(request_type: str) -> list[list[str]]:
    """The requirements for a request type: a list of groups, one step of each group must pass."""
    return settings.DSR_IDENTITY_STEPS[request_type]


def passed_identity_steps(rights_request: RightsRequest) -> set[str]:
    """The set of identity steps this request has passed."""
    return set(
        rights_request.identity_checks.filter(outcome=CheckOutcome.PASSED).values_list("step", flat=True)
    )


def outstanding_identity_steps(rights_request: RightsRequest) -> list[list[str]]:
    """The requirement groups not yet met, e.g. ``[["account", "document"]]``; empty: verifying may end.

    A request made by an authorized agent also needs staff to have checked the agent's written
    permission (CCPA regs §7063(a)), on top of the person's own proof for the request type.
    """
    passed = passed_identity_steps(rights_request)
    groups = list(required_identity_steps(rights_request.request_type))
    if rights_request.by_agent:
        groups.append([IdentityStep.AGENT_PERMISSION.value])
    return [group for group in groups if not passed & set(group)]
