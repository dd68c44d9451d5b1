"""`manage.py dsr_reminders`: the daily staff digest, over a real SMTP server on loopback."""

from datetime import date, datetime
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command

from dsr_requests import roles
from dsr_requests.models import RequestState
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory

S = RequestState
LONDON = ZoneInfo("Europe/London")
pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp(smtp_server):
    """The root conftest's real SMTP server on loopback; Django's SMTP backend points at it."""
    return smtp_server


@pytest.fixture(autouse=True)
def uk_calendar(settings):
    settings.DSR_HOLIDAY_COUNTRY = "GB"
    settings.DSR_HOLIDAY_SUBDIV = None
    settings.DSR_WORKING_DAYS = 30
    settings.DSR_DIGEST_TO = []


def _due(day, *, state=S.IN_REVIEW, policy=None, statutory=None, **extra):
    rights_request = RightsRequestFactory(state=state, **extra)
    rights_request.policy_due_on = policy or day
    rights_request.statutory_due_on = statutory or day
    rights_request.effective_due_on = day
    rights_request.save()
    return rights_request


def _run():
    out = StringIO()
    call_command("dsr_reminders", stdout=out)
    return out.getvalue()


@time_machine.travel(datetime(2024, 6, 5, 8, tzinfo=LONDON), tick=False)  # Wednesday
def test_digest_lists_overdue_due_soon_and_policy_after_statutory_in_text_and_html(smtp):
    reviewer = StaffUserFactory(roles=[roles.REVIEWER], email="reviewer@artemis.example")
    StaffUserFactory(email="outsider@artemis.example")  # staff, but may not see requests
    overdue = _due(date(2024, 6, 4), name="Ada Lovelace", email="ada@example.org")
    soon = _due(date(2024, 6, 12))  # 5 working days ahead
    later = _due(date(2024, 6, 13))
    flagged = _due(date(2024, 6, 20), policy=date(2024, 7, 1), statutory=date(2024, 6, 20))
    held = _due(date(2024, 6, 1), state=S.ON_HOLD, held_from_state=S.IN_REVIEW)

    output = _run()

    assert "1 overdue, 1 due within 5 working days, 1 policy after statutory" in output
    assert [rcpt for rcpt, _m in smtp.messages] == [[reviewer.email]]
    message = smtp.messages[0][1]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (text, html):
        assert overdue.reference in body and soon.reference in body and flagged.reference in body
        assert later.reference not in body and held.reference not in body
        assert "Ada" not in body and "ada@example.org" not in body
        assert f"/admin/dsr_requests/rightsrequest/{overdue.pk}/change/" in body
    assert "1 overdue, 1 due soon" in message["Subject"]


@time_machine.travel(datetime(2024, 6, 5, 8, tzinfo=LONDON), tick=False)
def test_no_digest_when_nothing_is_due(smtp):
    StaffUserFactory(roles=[roles.REVIEWER], email="reviewer@artemis.example")
    _due(date(2024, 7, 30))
    assert "digest sent to 0 recipient(s)" in _run()
    assert smtp.messages == []


@time_machine.travel(datetime(2024, 6, 5, 8, tzinfo=LONDON), tick=False)
def test_digest_goes_to_the_configured_addresses(smtp, settings):
    settings.DSR_DIGEST_TO = ["privacy-team@artemis.example"]
    _due(date(2024, 6, 4))
    _run()
    assert [rcpt for rcpt, _m in smtp.messages] == [["privacy-team@artemis.example"]]
