"""The request log CSV: regulator fields, outcomes, no personal data, formula-safe cells."""

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dsr_requests import request_log
from dsr_requests.models import RequestState
from dsr_requests.tests.factories import RightsRequestFactory

S = RequestState
LONDON = ZoneInfo("Europe/London")
pytestmark = pytest.mark.django_db


def _log():
    return list(csv.DictReader(io.StringIO("".join(request_log.csv_lines()))))


def test_one_row_per_request_oldest_first_with_outcome_and_days_to_respond():
    received = datetime(2024, 3, 1, 10, tzinfo=LONDON)
    done = RightsRequestFactory(
        state=S.COMPLETED, received_at=received, closed_at=received + timedelta(days=12)
    )
    still_open = RightsRequestFactory(state=S.IN_REVIEW, received_at=received + timedelta(days=1))
    withdrawn = RightsRequestFactory(
        state=S.WITHDRAWN, received_at=received + timedelta(days=2), closed_at=received + timedelta(days=3)
    )
    rows = _log()
    assert [r["reference"] for r in rows] == [done.reference, still_open.reference, withdrawn.reference]
    assert (
        rows[0]["outcome"],
        rows[0]["date_received"],
        rows[0]["response_date"],
        rows[0]["days_to_respond"],
    ) == (
        "fulfilled",
        "2024-03-01",
        "2024-03-13",
        "12",
    )
    assert (rows[1]["outcome"], rows[1]["response_date"], rows[1]["days_to_respond"]) == ("open", "", "")
    assert rows[2]["outcome"] == "withdrawn"
    assert list(rows[0]) == list(request_log.HEADER)


def test_log_holds_no_personal_data_beyond_the_reference():
    RightsRequestFactory(
        name="Grace Hopper",
        email="grace@example.org",
        details="My details",
        site_url="https://g.atlassian.net",
    )
    text = "".join(request_log.csv_lines())
    for secret in ("Grace", "grace@example.org", "My details", "g.atlassian.net"):
        assert secret not in text


def test_a_denial_is_logged_by_its_ground_never_by_the_reason_written_to_the_requester():
    """The free-text reason may name the person (and could be a spreadsheet formula): it stays out."""
    RightsRequestFactory(
        state=S.REJECTED,
        rejection_ground="identity_not_proven",
        rejection_reason="=HYPERLINK(1) Ada Lovelace's passport was expired",
        closed_at=datetime.now(tz=LONDON),
    )
    (row,) = _log()
    assert row["reason_for_denial"] == "Identity not proven"
    assert "Ada" not in "".join(request_log.csv_lines())


def test_the_log_records_each_requests_channel_and_whether_an_agent_made_it():
    """CCPA regs §7101(a): the record of requests holds "the manner in which the request was made"; the
    channel comes from each request, not a constant."""
    received = datetime(2024, 3, 1, 10, tzinfo=LONDON)
    for offset, channel in enumerate(["web", "email", "post", "phone"]):
        RightsRequestFactory(channel=channel, received_at=received + timedelta(days=offset))
    RightsRequestFactory(channel="post", by_agent=True, received_at=received + timedelta(days=9))
    rows = _log()
    assert [(r["channel"], r["by_authorized_agent"]) for r in rows] == [
        ("web form", "no"),
        ("email", "no"),
        ("post", "no"),
        ("phone", "no"),
        ("post", "yes"),
    ]
