"""Reads in selectors.py for staff: days left, completion times, monthly counts, dashboard figures."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from dsr_requests import selectors
from dsr_requests.models import RequestState, RequestType
from dsr_requests.tests.factories import RightsRequestFactory

S = RequestState
LONDON = ZoneInfo("Europe/London")
NOW = datetime(2024, 6, 5, 12, tzinfo=LONDON)  # a Wednesday
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def uk_calendar(settings):
    settings.DSR_HOLIDAY_COUNTRY = "GB"
    settings.DSR_HOLIDAY_SUBDIV = None


def _completed(request_type, days, closed_at=NOW):
    return RightsRequestFactory(
        state=S.COMPLETED,
        request_type=request_type,
        received_at=closed_at - timedelta(days=days),
        closed_at=closed_at,
    )


@pytest.mark.parametrize(
    ("state", "due", "expected"),
    [
        (S.IN_REVIEW, date(2024, 6, 20), ("11 working days", "ok")),
        (S.IN_REVIEW, date(2024, 6, 12), ("5 working days", "soon")),
        (S.IN_REVIEW, date(2024, 6, 5), ("0 working days", "soon")),
        (S.IN_REVIEW, date(2024, 6, 3), ("2 days overdue", "overdue")),
        (S.ON_HOLD, date(2024, 6, 3), ("on hold", "paused")),
    ],
)
def test_days_left_counts_working_days_and_colours_them(state, due, expected):
    rights_request = RightsRequestFactory.build(state=state, effective_due_on=due)
    shown = selectors.days_left(rights_request, NOW.date())
    assert (shown.text, shown.level) == expected


def test_days_left_is_not_shown_for_closed_requests():
    assert selectors.days_left(RightsRequestFactory.build(state=S.COMPLETED), NOW.date()) is None


def test_completion_times_give_nearest_rank_median_and_90th_percentile_per_type():
    for days in range(1, 11):  # 1..10 days
        _completed(RequestType.COPY, days)
    _completed(RequestType.DELETE, 4)
    _completed(RequestType.COPY, 99, closed_at=NOW - timedelta(days=400))  # outside 12 months
    RightsRequestFactory(state=S.REJECTED, rejection_reason="No.", closed_at=NOW)  # not a completion
    rows = {row["type"]: row for row in selectors.completion_times(NOW)}
    assert rows[RequestType.COPY.label] == {
        "type": RequestType.COPY.label,
        "count": 10,
        "median": 5.0,
        "p90": 9.0,
    }
    assert (rows[RequestType.DELETE.label]["median"], rows[RequestType.DELETE.label]["p90"]) == (4.0, 4.0)
    assert rows[RequestType.REVIEW.label]["median"] is None


def test_monthly_counts_cover_twelve_months_oldest_first():
    RightsRequestFactory(received_at=NOW)
    RightsRequestFactory(received_at=datetime(2024, 1, 15, tzinfo=LONDON))
    _completed(RequestType.REVIEW, 3)
    months = selectors.monthly_counts(NOW)
    assert [m["month"] for m in months][0] == date(2023, 7, 1)
    assert months[-1]["month"] == date(2024, 6, 1)
    june = months[-1]
    assert (june["received"], june["completed"]) == (2, 1)
    assert june["received_height"] == 100 and june["completed_height"] == 50
    assert next(m for m in months if m["month"] == date(2024, 1, 1))["received"] == 1


@time_machine.travel(NOW, tick=False)
def test_dashboard_counts_open_overdue_and_due_this_week():
    for due, state in (
        (date(2024, 6, 1), S.IN_REVIEW),
        (date(2024, 6, 9), S.VERIFYING),
        (date(2024, 6, 1), S.COMPLETED),
    ):
        r = RightsRequestFactory(state=state)
        r.policy_due_on = r.statutory_due_on = r.effective_due_on = due
        r.save()
    data = selectors.dashboard()
    assert (data["overdue"], data["due_this_week"], data["open_total"]) == (1, 1, 2)
    by_state = {row["state"]: row["count"] for row in data["open_by_state"]}
    assert by_state[S.IN_REVIEW] == 1 and by_state[S.APPROVED] == 0
