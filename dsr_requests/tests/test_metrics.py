"""The yearly request metrics (metrics.py): counts per type, median and mean days to respond, CSV."""

import csv
import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from dsr_requests import metrics
from dsr_requests.models import RequestState, RequestType
from dsr_requests.tests.factories import RightsRequestFactory

S = RequestState
LONDON = ZoneInfo("Europe/London")
pytestmark = pytest.mark.django_db


def at(year, month, day, hour=10, minute=0):
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


def made(request_type, state, received, closed=None):
    reason = "Not held." if state == S.REJECTED else ""
    return RightsRequestFactory(
        request_type=request_type,
        state=state,
        received_at=received,
        closed_at=closed,
        rejection_reason=reason,
    )


@pytest.fixture
def year_2024():
    """A hand-built year: what each figure must be is worked out in the comments."""
    review, delete = RequestType.REVIEW, RequestType.DELETE
    # Review, received in 2024: 7. Completed 3 (10, 30 and 10 days), rejected 1 (2 days), withdrawn 1,
    # closed unverified 1, open 1. Days answered: 2, 10, 10, 30 -> median 10, mean 13.
    made(review, S.COMPLETED, at(2024, 1, 1, 0, 30), at(2024, 1, 11))  # 10 days; first minutes of the year
    made(review, S.COMPLETED, at(2024, 3, 1), at(2024, 3, 31))  # 30 days
    # Closed at 00:30 British Summer Time on 5 June, which is still 4 June in UTC: 2 days, not 1.
    made(review, S.REJECTED, at(2024, 6, 3), at(2024, 6, 5, 0, 30))
    made(review, S.WITHDRAWN, at(2024, 7, 1), at(2024, 7, 2))
    made(review, S.CLOSED_UNVERIFIED, at(2024, 8, 1), at(2024, 8, 8))
    made(review, S.IN_REVIEW, at(2024, 11, 4))
    made(review, S.COMPLETED, at(2024, 12, 30), at(2025, 1, 9))  # received in 2024, answered in 2025: 10
    # Delete, received in 2024: 2, answered in 45 and 4 days -> median 24.5, mean 24.5.
    made(delete, S.COMPLETED, at(2024, 2, 1), at(2024, 3, 17))
    made(delete, S.REJECTED, at(2024, 9, 2), at(2024, 9, 6))
    # Not received in 2024, so not counted, even where answered in it.
    made(review, S.COMPLETED, at(2023, 12, 31, 23, 59), at(2024, 1, 5))
    made(review, S.REJECTED, at(2025, 1, 1, 0, 1), at(2025, 1, 2))


def test_the_yearly_metrics_count_received_complied_denied_and_the_median_and_mean_days(
    year_2024, django_assert_num_queries
):
    """CCPA regs §7102(a)(1): for the previous calendar year, the number of requests (to know, delete,
    correct, opt out) received, complied with in whole or in part, and denied, and the median or mean
    number of days within which the business substantively responded."""
    with django_assert_num_queries(2):
        rows = {row.request_type: row for row in metrics.yearly(2024)}
    review = rows[RequestType.REVIEW]
    assert (review.received, review.complied, review.denied, review.other_closed, review.still_open) == (
        7,
        3,
        1,
        2,
        1,
    )
    assert (review.median_days, review.mean_days) == (10.0, 13.0)
    delete = rows[RequestType.DELETE]
    assert (delete.received, delete.complied, delete.denied, delete.median_days, delete.mean_days) == (
        2,
        1,
        1,
        24.5,
        24.5,
    )
    copy = rows[RequestType.COPY]
    assert (copy.received, copy.median_days, copy.mean_days) == (0, None, None)
    total = rows[metrics.ALL_TYPES]
    assert (total.received, total.complied, total.denied, total.other_closed, total.still_open) == (
        9,
        4,
        2,
        2,
        1,
    )
    # All six answered: 2, 4, 10, 10, 30, 45 -> median (10 + 10) / 2, mean 101 / 6.
    assert (total.median_days, total.mean_days) == (10.0, 16.8)
    assert [row.request_type for row in metrics.yearly(2024)] == [*RequestType.values, metrics.ALL_TYPES]


def test_every_request_received_in_the_year_is_in_exactly_one_column(year_2024):
    for row in metrics.yearly(2024):
        assert row.received == row.complied + row.denied + row.other_closed + row.still_open


def test_the_query_count_does_not_grow_with_the_requests(django_assert_num_queries):
    for day in range(1, 29):
        made(RequestType.COPY, S.COMPLETED, at(2024, 2, day), at(2024, 3, day))
    with django_assert_num_queries(2):
        metrics.yearly(2024)


def test_the_csv_has_one_line_per_type_and_a_total(year_2024):
    lines = list(csv.DictReader(io.StringIO(metrics.csv_text(2024))))
    assert [line["request_type"] for line in lines] == [*RequestType.values, "all"]
    review = lines[0]
    assert review == {
        "year": "2024",
        "request_type": "review",
        "received": "7",
        "complied_with_in_whole_or_in_part": "3",
        "denied": "1",
        "other_closed": "2",
        "still_open": "1",
        "median_days_to_respond": "10.0",
        "mean_days_to_respond": "13.0",
    }
    change = lines[1]
    assert (change["request_type"], change["received"], change["median_days_to_respond"]) == (
        "change",
        "0",
        "",
    )
    assert lines[-1]["received"] == "9"


@pytest.mark.parametrize("raw", ["", "abc", "24", "20245", "1999", "2027", "２０２４", "2024.0"])
def test_a_year_the_report_cannot_be_made_for_says_which_years_it_can(raw):
    with pytest.raises(metrics.BadYear, match="from 2000 to 2026"):
        metrics.parse_year(raw, today=date(2026, 5, 1))


def test_a_year_from_2000_to_this_year_is_accepted():
    assert metrics.parse_year(" 2026 ", today=date(2026, 5, 1)) == 2026
    assert metrics.parse_year("2000", today=date(2026, 5, 1)) == 2000
