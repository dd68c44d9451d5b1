"""`manage.py dsr_reminders`: the daily staff digest, over a real SMTP server on loopback."""

import socket
from datetime import date, datetime
from email import message_from_bytes, policy
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.core.management import call_command

from dsr_requests import roles
from dsr_requests.models import RequestState
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory

S = RequestState
LONDON = ZoneInfo("Europe/London")
pytestmark = pytest.mark.django_db


class _Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def smtp(settings):
    """A real SMTP server on loopback, with Django's SMTP backend pointed at it."""
    inbox = _Inbox()
    with socket.socket() as probe:  # a free port (aiosmtpd's start-up check cannot use port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield inbox
    controller.stop()


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
