"""Non-trivial reads of rights requests.

Public pages: finding a request by its status token, and what its page shows. Staff side: deadline
lists, the dashboard and the digest, all reading the stored, indexed due-date columns the services keep
current, so each read is a fixed number of queries whatever the number of requests.
"""

from __future__ import annotations

import hmac
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import F, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from artemis_portal.paging import CAP
from dsr_requests import deadlines, tokens, worklist
from dsr_requests.clock import statutory_due_now
from dsr_requests.models import RequestCount, RequestState, RequestType, RightsRequest
from dsr_requests.states import ALLOWED_TRANSITIONS, FINAL_STATES, OPEN_STATES, outstanding_identity_steps
from registrations.descriptor import IDENTITY_PROOF_PAGE_NAME

if TYPE_CHECKING:
    from typing import Any

    from django.db.models import QuerySet

_TOKEN_SHAPE = re.compile(r"[0-9a-f]{64}")


def request_for_status_token(token: str) -> RightsRequest | None:
    """The request a status token opens, or None; every wrong token gets the same None.

    The lookup is by the token's SHA-256, so timing says nothing about the token itself; the final
    comparison is constant-time all the same.
    """
    if not _TOKEN_SHAPE.fullmatch(token or ""):
        return None
    digest = tokens.status_token_hash(token)
    rights_request = RightsRequest.objects.filter(status_token_hash=digest).first()
    if rights_request is None or not hmac.compare_digest(rights_request.status_token_hash, digest):
        return None
    return rights_request


def status_page_context(rights_request: RightsRequest) -> dict[str, Any]:
    """What the status page shows: public timeline, open questions, and which proofs are still needed."""
    outstanding = outstanding_identity_steps(rights_request)
    open_steps = {step for group in outstanding for step in group}
    return {
        "rights_request": rights_request,
        "events": rights_request.events.filter(public=True).order_by("created_at", "id"),
        "open_questions": list(rights_request.questions.filter(answered_at__isnull=True)),
        "needs_account_proof": rights_request.state == "verifying" and "account" in open_steps,
        "needs_document": rights_request.state == "verifying" and "document" in open_steps,
        "agent_check_pending": "agent_permission" in open_steps,
        # The person's own uploads: an agent's written permission is not theirs to count.
        "documents_sent": rights_request.identity_documents.filter(kind="identity").count(),
        "can_withdraw": "withdrawn" in ALLOWED_TRANSITIONS[rights_request.state],
        "closed_states": sorted(FINAL_STATES),
        # The requester's words for the state (worklist.STATE_NAMES holds both audiences' names).
        "state_name": worklist.requester_label(rights_request.state),
        # The steps name the pages they send the requester to, in those pages' own words.
        "account_page_name": IDENTITY_PROOF_PAGE_NAME,
    }


# --- Staff side ---------------------------------------------------------------------------------------

S = RequestState
# The clock runs in these states (it stops on hold, and closed requests are answered).
RUNNING_STATES = frozenset(OPEN_STATES - {S.ON_HOLD})
DUE_SOON_WORKING_DAYS = 5


def end_of_week(today: date) -> date:
    """The Sunday that ends ``today``'s week."""
    return today + timedelta(days=6 - today.weekday())


def running(queryset: QuerySet[RightsRequest] | None = None) -> QuerySet[RightsRequest]:
    """Requests whose clock is running (of ``queryset``, default all)."""
    queryset = RightsRequest.objects.all() if queryset is None else queryset
    return queryset.filter(state__in=RUNNING_STATES)


def overdue(today: date, queryset: QuerySet[RightsRequest] | None = None) -> QuerySet[RightsRequest]:
    """Running requests past their effective due date."""
    return running(queryset).filter(effective_due_on__lt=today)


def due_this_week(today: date, queryset: QuerySet[RightsRequest] | None = None) -> QuerySet[RightsRequest]:
    """Running requests due from today to the end of this week."""
    return running(queryset).filter(effective_due_on__gte=today, effective_due_on__lte=end_of_week(today))


def due_soon(today: date, queryset: QuerySet[RightsRequest] | None = None) -> QuerySet[RightsRequest]:
    """Running requests due within the next DUE_SOON_WORKING_DAYS working days (not yet overdue)."""
    horizon = deadlines.add_working_days(today, DUE_SOON_WORKING_DAYS)
    return running(queryset).filter(effective_due_on__gte=today, effective_due_on__lte=horizon)


def policy_after_statutory(queryset: QuerySet[RightsRequest] | None = None) -> QuerySet[RightsRequest]:
    """Open requests whose policy date really falls after their statutory date (each request's two stored
    dates compared, extended or not, on hold or not): for these the law's date is the one to meet."""
    queryset = RightsRequest.objects.all() if queryset is None else queryset
    return queryset.filter(state__in=OPEN_STATES, policy_due_on__gt=F("statutory_due_on"))


def due_date_explanation(rights_request: RightsRequest, today: date) -> str:
    """For staff: both dates, which one applies and why, and what a running hold does to each."""
    r = rights_request
    if r.policy_due_on is None or r.statutory_due_on is None:
        return ""
    values = {
        "policy": r.policy_due_on.isoformat(),
        "statutory": r.statutory_due_on.isoformat(),
        "regime": r.get_regime_display(),
    }
    if r.statutory_due_on < r.policy_due_on:
        template = _(
            "The statutory date (%(regime)s) %(statutory)s comes before our date %(policy)s: meet the law's."
        )
    elif r.policy_due_on < r.statutory_due_on:
        template = _(
            "Our 30-working-day date %(policy)s comes before the statutory date (%(regime)s) %(statutory)s."
        )
    else:
        template = _("Our date and the statutory date (%(regime)s) are both %(policy)s.")
    text = str(template % values)
    if r.state == S.ON_HOLD:
        if statutory_due_now(r, today) != r.statutory_due_on:
            text += " " + str(
                _("On hold to %(reason)s: both clocks have stopped; the dates move when the hold ends.")
                % {"reason": r.get_hold_reason_display().lower()}
            )
        else:
            text += " " + str(
                _(
                    "On hold (%(reason)s): only our date is paused; the statutory date keeps running under "
                    "%(regime)s."
                )
                % {"reason": r.get_hold_reason_display(), "regime": r.get_regime_display()}
            )
    return text


# Where each regime applies, in the words of the public form (deadlines.regime_for_country decides it).
REGIME_AREAS = (
    (deadlines.Regime.UK_GDPR, _("in the United Kingdom, and anywhere outside the EU/EEA and the USA")),
    (deadlines.Regime.GDPR, _("in the EU or the EEA")),
    (deadlines.Regime.CCPA, _("in the United States (California)")),
)


def answer_dates(today: date | None = None) -> list[dict[str, Any]]:
    """For the public form: the date a request sent today would be answered by, for each regime.

    Each is the earlier of the policy's working-day date and the regime's statutory date: the requester
    is promised the earlier one.
    """
    today = today or timezone.localdate()
    return [
        {"where": where, "due": deadlines.due_dates(today, regime=regime).effective}
        for regime, where in REGIME_AREAS
    ]


@dataclass(frozen=True)
class DaysLeft:
    """How a due date looks in a list: a short text and a colour class (ok, soon, overdue, paused)."""

    text: str
    level: str


def days_left(rights_request: RightsRequest, today: date) -> DaysLeft | None:
    """Working days left before the effective due date, or how far past it; None when not tracked."""
    if rights_request.state in FINAL_STATES or rights_request.effective_due_on is None:
        return None
    if rights_request.state == S.ON_HOLD:
        return DaysLeft(str(_("on hold")), "paused")
    due = rights_request.effective_due_on
    if due < today:
        # Each date in its own unit, labelled (worklist.lateness): our date in working days, the law's in
        # calendar days.
        text = worklist.lateness(
            rights_request, today, statutory_due=statutory_due_now(rights_request, today)
        )
        if not text:  # the dates were set by hand (a test): the effective date alone
            late = (today - due).days
            text = ngettext("%(days)d day overdue", "%(days)d days overdue", late) % {"days": late}
        return DaysLeft(text, "overdue")
    left = deadlines.working_days_between(today, due)
    level = "soon" if left <= DUE_SOON_WORKING_DAYS else "ok"
    return DaysLeft(ngettext("%(days)d working day", "%(days)d working days", left) % {"days": left}, level)


# --- Dashboard ---------------------------------------------------------------------------------------


def _ranked(histogram: list[tuple[int, int]], fraction: float) -> int:
    """The nearest-rank percentile of a non-empty ``[(value, how many), ...]`` histogram sorted by value."""
    rank = max(math.ceil(fraction * sum(n for _value, n in histogram)), 1)
    seen = 0
    for value, n in histogram:
        seen += n
        if seen >= rank:
            return value
    return histogram[-1][0]


def _window(now: datetime, months: int) -> list[date]:
    """The first days of the ``months`` calendar months ending with ``now``'s, oldest first."""
    return _month_starts(timezone.localdate(now), months)


def completion_times(now: datetime, *, months: int = 12) -> list[dict[str, Any]]:
    """Median and 90th-percentile days from receipt to completion, per type, over the ``months`` calendar
    months of the chart (this one included).

    Read from the rollup (``RequestCount``; issue 19), which keeps each completion's whole days taken,
    rounded down: nearest-rank percentiles of those (a median is then always a real request's time), in
    one query over a few thousand rows whatever the number of requests. The dashboard says so.
    """
    since = _window(now, months)[0]
    rows = (
        RequestCount.objects.filter(kind=RequestCount.Kind.COMPLETED, month__gte=since)
        .values_list("key", "days")
        .annotate(n=Sum("count"))
        .order_by("key", "days")
    )
    histograms: dict[str, list[tuple[int, int]]] = {}
    for request_type, days, n in rows:
        if n:
            histograms.setdefault(request_type, []).append((days, n))
    result = []
    for request_type in RequestType:
        histogram = histograms.get(request_type.value, [])
        count = sum(n for _days, n in histogram)
        result.append(
            {
                "type": request_type.label,
                "count": count,
                "median": float(_ranked(histogram, 0.5)) if count else None,
                "p90": float(_ranked(histogram, 0.9)) if count else None,
            }
        )
    return result


def _month_starts(today: date, months: int) -> list[date]:
    first = today.replace(day=1)
    return [deadlines.add_months(first, -offset) for offset in range(months - 1, -1, -1)]


def monthly_counts(now: datetime, *, months: int = 12) -> list[dict[str, Any]]:
    """Requests received and completed per calendar month, oldest first, with bar heights (0-100).

    From the rollup (``RequestCount``): one query over at most a few thousand rows.
    """
    starts = _window(now, months)
    received: dict[date, int] = {}
    completed: dict[date, int] = {}
    rows = (
        RequestCount.objects.filter(
            kind__in=[RequestCount.Kind.RECEIVED, RequestCount.Kind.COMPLETED], month__gte=starts[0]
        )
        .values_list("kind", "month")
        .annotate(n=Sum("count"))
        .order_by()
    )
    for kind, month, n in rows:
        (received if kind == RequestCount.Kind.RECEIVED else completed)[month] = n
    peak = max([1, *received.values(), *completed.values()])
    return [
        {
            "month": start,
            "received": received.get(start, 0),
            "completed": completed.get(start, 0),
            # In steps of 5%, one CSS class each: no inline styles, so a strict CSP still draws it.
            "received_height": 5 * round(20 * received.get(start, 0) / peak),
            "completed_height": 5 * round(20 * completed.get(start, 0) / peak),
        }
        for start in starts
    ]


def _capped_count(queryset: QuerySet[RightsRequest]) -> int:
    """How many, counting at most ``CAP + 1`` (as the list does): an index-only scan that stops there."""
    return queryset.order_by()[: CAP + 1].count()


def dashboard(now: datetime | None = None) -> dict[str, Any]:
    """Everything the staff dashboard shows, in six queries whatever the number of requests: the
    counts per state, per month and the completion times come from the rollup; overdue, due soon and due
    this week count the running requests on the (state, due date) index, each over its own range of due
    dates. Overdue and due soon stop at ``CAP`` as the list's count does ("more than 10,000"): counted
    whole, they read every overdue request's index entry, a number that grows with the backlog (issue 19).
    Due this week is one week of due dates, counted exactly."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    # Kept by the services as states change (``rollup``), not counted from the requests (issue 19).
    by_state = dict(
        RequestCount.objects.filter(kind=RequestCount.Kind.STATE, key__in=OPEN_STATES).values_list(
            "key", "count"
        )
    )
    overdue_count = _capped_count(overdue(today))
    # Within 5 working days, overdue included: what the list's "due soon" filter shows.
    due_soon_count = _capped_count(worklist.due_soon(today, RightsRequest.objects.all()))
    return {
        "today": today,
        "open_by_state": [
            {"state": state, "label": worklist.staff_label(state), "count": by_state.get(state, 0)}
            for state in RequestState
            if state in OPEN_STATES
        ],
        "open_total": sum(by_state.values()),
        "overdue": min(overdue_count, CAP),
        "overdue_capped": overdue_count > CAP,
        "due_this_week": due_this_week(today).count(),
        "due_soon": min(due_soon_count, CAP),
        "due_soon_capped": due_soon_count > CAP,
        "count_cap": CAP,
        "completion_times": completion_times(now),
        "months": monthly_counts(now),
    }
