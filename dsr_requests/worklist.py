"""How staff work the queue of rights requests: state names, urgency order, "due soon", lateness, search.

Read by the admin list, the dashboard and the requester's status page (for its state names). Every list
read here is a filter or an ordering over stored, indexed columns (``effective_due_on``, ``state``,
``received_at``, ``email_hash``, ``reference``), so a page costs a fixed number of queries.
"""

import re
from dataclasses import dataclass
from datetime import date

from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from dsr_requests import deadlines, tokens
from dsr_requests.list_order import OPEN_STATE_VALUES, URGENT_DUE
from dsr_requests.models import RequestState, RequestType

S = RequestState


# --- state names ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateNames:
    """What staff call a state, and what the requester reads for it."""

    staff: str
    requester: str


# One mapping for both audiences. The requester's words are the model's choice labels (the timeline and
# every email use them); staff read what the request is waiting for and who has to act.
STATE_NAMES = {
    S.SUBMITTED: StateNames(_("Awaiting email confirmation"), S.SUBMITTED.label),
    S.VERIFYING: StateNames(_("Identity check needed"), S.VERIFYING.label),
    S.IN_REVIEW: StateNames(_("Ready for review"), S.IN_REVIEW.label),
    S.APPROVED: StateNames(_("Approved: ready to carry out"), S.APPROVED.label),
    S.FULFILLING: StateNames(_("Being carried out"), S.FULFILLING.label),
    S.COMPLETED: StateNames(_("Completed"), S.COMPLETED.label),
    S.REJECTED: StateNames(_("Refused"), S.REJECTED.label),
    S.WITHDRAWN: StateNames(_("Withdrawn by the requester"), S.WITHDRAWN.label),
    S.CLOSED_UNVERIFIED: StateNames(_("Closed: email never confirmed"), S.CLOSED_UNVERIFIED.label),
    S.ON_HOLD: StateNames(_("On hold: waiting for the requester"), S.ON_HOLD.label),
}


# The request type in a word, for the list's narrow column (the form's full sentence is on the change page).
TYPE_NAMES = {
    RequestType.REVIEW: _("Review"),
    RequestType.CHANGE: _("Correction"),
    RequestType.DELETE: _("Deletion"),
    RequestType.PROCESSING: _("How we process"),
    RequestType.COPY: _("Copy"),
    RequestType.TRANSFER: _("Transfer"),
}


def staff_label(state) -> str:
    return STATE_NAMES[S(state)].staff


def requester_label(state) -> str:
    return STATE_NAMES[S(state)].requester


# --- urgency order --------------------------------------------------------------------------------------

# The ordering expression lives beside the indexes that serve it (list_order.py).
OPEN = tuple(S(value) for value in OPEN_STATE_VALUES)

# The request list's default order: open requests, earliest due first (those with no due date yet last),
# then the rest newest first. Every key is an expression of the row's own columns; the expression indexes
# declared with these same expressions (dsr_urgent_first_idx, and one per list filter) serve the first
# page without a sort. NULLS LAST is PostgreSQL's default for the index; SQLite needs it said.
URGENT_FIRST = (URGENT_DUE.asc(nulls_last=True), F("received_at").desc(), F("pk").desc())
NEWEST_FIRST = (F("received_at").desc(), F("pk").desc())


def urgent_first(queryset):
    return queryset.order_by(*URGENT_FIRST)


# --- due soon and lateness ------------------------------------------------------------------------------

DUE_SOON_WORKING_DAYS = 5
# The clock runs in these (it stops on hold).
RUNNING = tuple(state for state in OPEN if state != S.ON_HOLD)


def due_soon_horizon(today: date) -> date:
    """The last day that counts as "due soon": the 5th working day after today."""
    return deadlines.add_working_days(today, DUE_SOON_WORKING_DAYS)


def due_soon(today: date, queryset):
    """Running requests due within the next 5 working days, overdue ones included, by their effective date
    (the earlier of the two). A calendar week would miss Monday's request when today is Friday."""
    return queryset.filter(state__in=RUNNING, effective_due_on__lte=due_soon_horizon(today))


def lateness(rights_request, today: date, *, statutory_due=None) -> str:
    """How late an open request is, against each date in its own unit, each labelled; "" when on time.

    Our date is counted in working days (it is set in working days), the statutory date in calendar days
    (the law counts calendar days). ``statutory_due`` is the statutory date as it stands today (a running
    hold that stops the legal clock moves it), defaulting to the stored one.
    """
    parts = []
    policy = rights_request.policy_due_on
    statutory = statutory_due or rights_request.statutory_due_on
    if policy and policy < today:
        late = deadlines.working_days_between(policy, today)
        parts.append(
            ngettext(
                "%(days)d working day past our date",
                "%(days)d working days past our date",
                late,
            )
            % {"days": late}
        )
    if statutory and statutory < today:
        late = (today - statutory).days
        parts.append(
            ngettext(
                "%(days)d day past the statutory date",
                "%(days)d days past the statutory date",
                late,
            )
            % {"days": late}
        )
    return "; ".join(parts)


# --- search ---------------------------------------------------------------------------------------------

_REFERENCE = re.compile(r"(?:dsr-?)?([0-9a-z]{6})", re.IGNORECASE)


def search(queryset, term: str):
    """Requests matching a search box entry: an email address (through its blind index, exact address),
    a reference with or without ``DSR-``, or an Atlassian account ID. Each is an indexed equality."""
    term = term.strip()
    if not term:
        return queryset
    if "@" in term:
        return queryset.filter(email_hash=tokens.email_blind_index(term))
    matches = Q(account_id=term)
    reference = _REFERENCE.fullmatch(term)
    if reference:
        matches |= Q(reference=f"DSR-{reference.group(1).upper()}")
    return queryset.filter(matches)
