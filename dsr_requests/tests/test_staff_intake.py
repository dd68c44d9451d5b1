"""Requests staff log from email, post or phone, and requests made by authorized agents (staff_intake.py)."""

import base64
import re
from datetime import date, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from dsr_requests import roles, selectors, services, staff_actions, staff_intake
from dsr_requests.models import (
    DocumentKind,
    IdentityCheck,
    IdentityDocument,
    IdentityStep,
    OutboundEmail,
    RejectionGround,
    RequestState,
    RightsRequest,
)
from dsr_requests.tests.conftest import LONDON
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory

S = RequestState
NOW = datetime(2025, 3, 10, 10, tzinfo=LONDON)  # a Monday
PERMISSION_PDF = b"%PDF-1.4\nI, Ada Lovelace, authorise Agent Smith to ask for my data. Signed.\n"
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("uk_calendar")]


@pytest.fixture(autouse=True)
def frozen_clock():
    """Monday 10 March 2025, 10:00 in London: the day staff log what reached them earlier."""
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def reviewer():
    return StaffUserFactory(roles=[roles.REVIEWER])


def at(year, month, day, hour=9):
    return datetime(year, month, day, hour, tzinfo=LONDON)


def log(actor, **overrides):
    fields = {
        "request_type": "review",
        "name": "Ada Lovelace",
        "email": "ada@example.org",
        "channel": "email",
        "received_at": at(2025, 3, 3),
        "country": "GB",
    }
    fields.update(overrides)
    return staff_intake.log_request(actor=actor, **fields)


def log_by_agent(actor, **overrides):
    fields = {
        "agent_name": "Agent Smith",
        "agent_email": "agent@agency.example",
        "agent_permission": staff_intake.AgentPermission(
            content=PERMISSION_PDF, content_type="application/pdf"
        ),
    }
    fields.update(overrides)
    return log(actor, **fields)


# --- the date received starts every clock --------------------------------------------------------------


@pytest.mark.parametrize("channel", ["email", "post", "phone"])
def test_a_request_logged_from_email_post_or_phone_starts_its_clocks_on_the_date_received(
    reviewer, channel, committed
):
    """GDPR Art. 12(3) ("within one month of receipt of the request"); ICO, right of access, "Time
    limits": "the time limit starts from the day you receive the request". Received Monday 3 March 2025,
    logged a week later: UK GDPR due 3 April 2025 (not 10 April), the policy's 30 working days 14 April
    (Good Friday and Easter Monday excluded), not counted from the day it was logged."""
    with committed():
        rights_request = log(reviewer, channel=channel, received_at=at(2025, 3, 3, 15))
    rights_request.refresh_from_db()
    assert rights_request.channel == channel
    assert rights_request.received_at == at(2025, 3, 3, 15)
    assert rights_request.created_at == NOW
    assert rights_request.regime == "uk_gdpr"
    assert rights_request.statutory_due_on == date(2025, 4, 3)
    assert rights_request.policy_due_on == date(2025, 4, 14)
    assert rights_request.effective_due_on == date(2025, 4, 3)
    event = rights_request.events.get()
    assert (event.from_state, event.to_state, event.actor, event.public) == ("", S.SUBMITTED, reviewer, True)
    assert event.note == f"Request received by {channel}, logged by staff"


def test_a_ccpa_request_logged_late_is_due_45_days_after_the_day_it_was_received(reviewer):
    """CCPA Civ. Code §1798.130(a)(2): respond "within 45 days of receiving the request" (and regs
    §7021(a)); received 3 March 2025 by post, logged 10 March: due 17 April, not 24 April."""
    rights_request = log(reviewer, channel="post", country="US", received_at=at(2025, 3, 3))
    assert rights_request.regime == "ccpa"
    assert rights_request.statutory_due_on == date(2025, 4, 17)


def test_a_request_received_long_ago_is_logged_as_already_overdue(reviewer):
    """The clock ran from receipt, whether or not the request was logged: a request received on
    6 January 2025 (UK GDPR: due 6 February) and logged on 10 March is overdue, and the lists say so."""
    rights_request = log(reviewer, received_at=at(2025, 1, 6))
    assert rights_request.effective_due_on == date(2025, 2, 6)
    assert rights_request in selectors.overdue(timezone.localdate())
    assert selectors.days_left(rights_request, timezone.localdate()).level == "overdue"


def test_a_time_received_is_kept_and_without_one_the_day_counts_from_its_start(reviewer):
    early = log(reviewer, received_at=timezone.make_aware(datetime(2025, 3, 3)))
    assert timezone.localdate(early.received_at) == date(2025, 3, 3)
    assert early.statutory_due_on == date(2025, 4, 3)


# --- the same confirmation email and status link as a web request --------------------------------------


def _normalised(message, reference):
    """An email's subject and text with what differs between any two requests (reference, links) masked."""

    def mask(text):
        return re.sub(r"https?://\S+", "<link>", text.replace(reference, "<ref>"))

    return mask(message.subject), mask(message.body), mask(message.alternatives[0][0])


def test_the_person_gets_the_same_confirmation_email_as_a_web_request_and_then_the_status_link(
    reviewer, committed, mailoutbox
):
    """A logged request is then a web request: the same "received" email with the confirmation link to
    the person's own address, then, once they confirm it, the status-page link."""
    with committed():
        web = services.submit_request(request_type="review", name="Ada Lovelace", email="web@example.org")
        logged = log(reviewer, email="ada@example.org")
    web_email, logged_email = mailoutbox
    assert logged_email.to == ["ada@example.org"]
    assert _normalised(logged_email, logged.reference) == _normalised(web_email, web.reference)
    assert "/requests/confirm/?token=" in logged_email.body
    assert logged.emails.get().event == web.emails.get().event == "received"

    with committed():
        confirmed, token = services.confirm_email(reference=logged.reference)
    assert confirmed.state == S.VERIFYING
    status_email = mailoutbox[-1]
    assert status_email.to == ["ada@example.org"]
    assert f"/requests/status/{token}/" in status_email.body
    assert selectors.request_for_status_token(token) == confirmed


def test_the_unconfirmed_clock_runs_from_when_the_link_was_sent_not_from_the_date_received(reviewer):
    """Reminder after DSR_REMINDER_AFTER_DAYS and closing after DSR_CLOSE_UNVERIFIED_AFTER_DAYS count from
    when the person was sent the link: a letter received ten days ago and logged today is not closed by
    tonight's run."""
    rights_request = log(reviewer, channel="post", received_at=at(2025, 2, 28))
    assert services.close_unverified_requests(now=NOW + timedelta(days=1)) == 0
    assert services.send_confirmation_reminders(now=NOW + timedelta(days=2)) == 0
    assert services.send_confirmation_reminders(now=NOW + timedelta(days=3, minutes=1)) == 1
    assert services.close_unverified_requests(now=NOW + timedelta(days=7, minutes=1)) == 1
    rights_request.refresh_from_db()
    assert rights_request.state == S.CLOSED_UNVERIFIED


# --- refusals store nothing ---------------------------------------------------------------------------


def _nothing_stored(mailoutbox):
    return not RightsRequest.objects.exists() and not OutboundEmail.objects.exists() and not mailoutbox


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"received_at": NOW + timedelta(minutes=5)}, "cannot be in the future"),
        ({"received_at": at(2024, 3, 9)}, "more than 12 months ago"),
        ({"channel": "web"}, "email, post or phone"),
        ({"agent_name": "Agent Smith"}, "needs the agent's name and their written permission"),
        (
            {
                "agent_permission": staff_intake.AgentPermission(
                    content=PERMISSION_PDF, content_type="application/pdf"
                )
            },
            "needs the agent's name and their written permission",
        ),
    ],
)
def test_a_refused_log_stores_nothing_and_sends_nothing(reviewer, overrides, message, committed, mailoutbox):
    with committed(), pytest.raises(services.ActionRefused, match=message):
        log(reviewer, **overrides)
    assert _nothing_stored(mailoutbox)


def test_a_receipt_exactly_twelve_months_ago_may_be_logged(reviewer):
    assert log(reviewer, received_at=at(2024, 3, 10)).statutory_due_on == date(2024, 4, 10)


def test_logging_needs_the_log_request_permission(committed, mailoutbox):
    viewer = StaffUserFactory()
    with committed(), pytest.raises(PermissionDenied):
        log(viewer)
    assert _nothing_stored(mailoutbox)
    for role in (roles.REVIEWER, roles.APPROVER, roles.PRIVACY_ADMIN):
        assert StaffUserFactory(roles=[role]).has_perm("dsr_requests.log_request")


# --- authorized agents ---------------------------------------------------------------------------------


def test_an_agents_request_records_the_agent_and_keeps_their_permission_encrypted_at_rest(reviewer):
    """CCPA regs §7063(a): the business may require the agent's signed permission; it is kept like an
    identity document, encrypted in the application tier, so the database never holds it in the clear."""
    rights_request = log_by_agent(reviewer)
    assert rights_request.by_agent is True
    assert (rights_request.agent_name, rights_request.agent_email) == ("Agent Smith", "agent@agency.example")
    document = rights_request.identity_documents.get()
    assert (document.kind, document.content_type, document.size) == (
        DocumentKind.AGENT_PERMISSION,
        "application/pdf",
        len(PERMISSION_PDF),
    )
    assert base64.b64decode(document.content) == PERMISSION_PDF
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM dsr_requests_identitydocument")
        stored = bytes(cursor.fetchone()[0])
        cursor.execute("SELECT agent_name, agent_email FROM dsr_requests_rightsrequest")
        stored_agent = b"".join(bytes(value) for value in cursor.fetchone())
    assert b"Lovelace" not in stored and base64.b64encode(PERMISSION_PDF)[:40] not in stored
    assert b"Agent Smith" not in stored_agent and b"agency.example" not in stored_agent
    notes = list(rights_request.events.values_list("note", flat=True))
    assert notes[1].startswith("Made on your behalf by an authorized agent")


def test_the_agent_is_sent_nothing(reviewer, committed, mailoutbox):
    """Every email, from the confirmation link to the answer, goes to the person's own address: the agent
    receives nothing with the person's data (CCPA regs §7063(a): the consumer verifies their own identity
    directly with the business)."""
    with committed():
        rights_request = log_by_agent(reviewer, request_type="processing")
        services.confirm_email(reference=rights_request.reference)
        staff_intake.record_agent_permission_check(
            rights_request=rights_request,
            actor=reviewer,
            passed=True,
            note="Signed letter, matches the name.",
        )
        services.reject(
            rights_request=rights_request,
            actor=reviewer,
            reason="We hold nothing about you.",
            ground=RejectionGround.NOTHING_HELD,
        )
    assert len(mailoutbox) == 4
    assert all(message.to == ["ada@example.org"] for message in mailoutbox)
    assert not any("agent@agency.example" in message.body for message in mailoutbox)
    assert set(OutboundEmail.objects.values_list("to", flat=True)) == {"ada@example.org"}


def test_an_agents_request_cannot_reach_review_before_staff_check_the_agents_permission(reviewer, committed):
    """CCPA regs §7063(a): a request through an authorized agent needs the agent's signed permission and
    the consumer's own verification; the person's proof alone (here the document check) is not enough."""
    rights_request = log_by_agent(reviewer, request_type="review")
    confirmed, _token = services.confirm_email(reference=rights_request.reference)
    services.add_identity_document(
        rights_request=confirmed, content=b"%PDF-1.4 passport", content_type="application/pdf"
    )
    services.record_document_check(rights_request=confirmed, actor=reviewer, passed=True, note="Passport ok.")
    confirmed.refresh_from_db()
    assert confirmed.state == S.VERIFYING
    assert services.outstanding_identity_steps(confirmed) == [[IdentityStep.AGENT_PERMISSION]]
    with pytest.raises(services.InvalidTransition):
        services.approve(rights_request=confirmed, actor=StaffUserFactory(roles=[roles.APPROVER]))

    staff_intake.record_agent_permission_check(
        rights_request=confirmed, actor=reviewer, passed=True, note="Signed letter, matches the name."
    )
    confirmed.refresh_from_db()
    assert confirmed.state == S.IN_REVIEW
    check = confirmed.identity_checks.get(step=IdentityStep.AGENT_PERMISSION)
    assert (check.outcome, check.actor, check.note) == (
        "passed",
        reviewer,
        "Signed letter, matches the name.",
    )


def test_a_not_accepted_permission_keeps_the_request_in_verification(reviewer):
    """CCPA regs §7063(a): without the agent's permission the request does not go ahead."""
    rights_request = log_by_agent(reviewer, request_type="processing")
    staff_intake.record_agent_permission_check(
        rights_request=rights_request, actor=reviewer, passed=False, note="Unsigned."
    )
    confirmed, _token = services.confirm_email(reference=rights_request.reference)
    assert confirmed.state == S.VERIFYING
    assert services.outstanding_identity_steps(confirmed) == [[IdentityStep.AGENT_PERMISSION]]


def test_staff_may_check_the_agents_permission_before_the_person_confirms(reviewer, committed, mailoutbox):
    rights_request = log_by_agent(reviewer, request_type="processing")
    staff_intake.record_agent_permission_check(
        rights_request=rights_request, actor=reviewer, passed=True, note="Signed letter."
    )
    rights_request.refresh_from_db()
    assert rights_request.state == S.SUBMITTED
    with committed():
        confirmed, _token = services.confirm_email(reference=rights_request.reference)
    assert confirmed.state == S.IN_REVIEW


def test_the_confirmed_email_says_the_agents_permission_is_being_checked(reviewer, committed, mailoutbox):
    rights_request = log_by_agent(reviewer, request_type="processing")
    with committed():
        services.confirm_email(reference=rights_request.reference)
    body = mailoutbox[-1].body
    assert "made by an authorized agent" in body and "one more proof" not in body


def test_the_agents_permission_is_deleted_when_staff_record_their_decision(reviewer):
    """The permission is kept no longer than the decision on it (as identity documents are); the person's
    own identity document waits for its own decision."""
    rights_request = log_by_agent(reviewer)
    confirmed, _token = services.confirm_email(reference=rights_request.reference)
    services.add_identity_document(
        rights_request=confirmed, content=b"%PDF-1.4 passport", content_type="application/pdf"
    )
    staff_intake.record_agent_permission_check(
        rights_request=confirmed, actor=reviewer, passed=True, note="Signed letter."
    )
    assert list(IdentityDocument.objects.values_list("kind", flat=True)) == [DocumentKind.IDENTITY]
    services.record_document_check(rights_request=confirmed, actor=reviewer, passed=True, note="Passport ok.")
    assert not IdentityDocument.objects.exists()


def _withdraw(rights_request, reviewer):
    services.withdraw(rights_request=rights_request)


def _close_unverified(rights_request, reviewer):
    services.close_unverified_requests(now=NOW + timedelta(days=8))


def _reject_then_purge(rights_request, reviewer):
    confirmed, _token = services.confirm_email(reference=rights_request.reference)
    services.reject(
        rights_request=confirmed, actor=reviewer, reason="Not ours.", ground=RejectionGround.OUT_OF_SCOPE
    )
    assert services.purge().documents == 1


def _tombstone(rights_request, reviewer):
    services.withdraw(rights_request=rights_request)
    services.tombstone_request(request_id=rights_request.pk)


@pytest.mark.parametrize("close", [_withdraw, _close_unverified, _reject_then_purge, _tombstone])
def test_the_agents_permission_is_deleted_when_the_request_is_closed(reviewer, close):
    rights_request = log_by_agent(reviewer)
    close(rights_request, reviewer)
    assert not IdentityDocument.objects.exists()


@pytest.mark.parametrize("close", [_close_unverified, _tombstone])
def test_erasing_a_request_erases_the_agents_name_and_address(reviewer, close):
    rights_request = log_by_agent(reviewer)
    close(rights_request, reviewer)
    rights_request.refresh_from_db()
    assert (rights_request.agent_name, rights_request.agent_email) == ("", "")
    assert rights_request.by_agent is True  # not personal data: the log keeps how the request was made


def test_the_requesters_address_must_not_be_the_agents(reviewer, committed, mailoutbox):
    with committed(), pytest.raises(services.ActionRefused, match="their own, not the agent's"):
        log_by_agent(reviewer, email="Agent@Agency.example")
    assert _nothing_stored(mailoutbox)


def test_the_agent_check_needs_a_note_the_permission_and_an_agents_request(reviewer):
    agents = log_by_agent(reviewer)
    with pytest.raises(services.ActionRefused, match="Say what you checked"):
        staff_intake.record_agent_permission_check(
            rights_request=agents, actor=reviewer, passed=True, note=" "
        )
    with pytest.raises(PermissionDenied):
        staff_intake.record_agent_permission_check(
            rights_request=agents, actor=StaffUserFactory(), passed=True, note="ok"
        )
    own = log(reviewer, email="bob@example.org")
    with pytest.raises(services.ActionRefused, match="not made by an authorized agent"):
        staff_intake.record_agent_permission_check(rights_request=own, actor=reviewer, passed=True, note="ok")
    assert not agents.identity_checks.exists() and not own.identity_checks.exists()


def test_the_agent_check_buttons_show_only_on_an_agents_request_until_it_is_decided(reviewer):
    def names(rights_request):
        rights_request.refresh_from_db()
        return {action.name for action in staff_actions.available_actions(rights_request, reviewer)}

    agents = log_by_agent(reviewer)
    assert {"agent_permission_passed", "agent_permission_failed"} <= names(agents)
    assert not {"agent_permission_passed", "agent_permission_failed"} & names(
        log(reviewer, email="b@example.org")
    )
    staff_intake.record_agent_permission_check(rights_request=agents, actor=reviewer, passed=True, note="ok")
    assert not {"agent_permission_passed", "agent_permission_failed"} & names(agents)


def test_an_identity_upload_limit_does_not_count_the_agents_permission(reviewer):
    rights_request = log_by_agent(reviewer)
    confirmed, _token = services.confirm_email(reference=rights_request.reference)
    for _number in range(services.MAX_DOCUMENTS_PER_REQUEST):
        services.add_identity_document(
            rights_request=confirmed, content=b"%PDF-1.4", content_type="application/pdf"
        )
    assert confirmed.identity_documents.count() == services.MAX_DOCUMENTS_PER_REQUEST + 1


def test_the_status_page_tells_the_person_the_agents_permission_is_being_checked(reviewer, client):
    rights_request = log_by_agent(reviewer, request_type="processing")
    _confirmed, token = services.confirm_email(reference=rights_request.reference)
    page = client.get(f"/requests/status/{token}/").content.decode()
    assert "our staff are checking the agent" in page
    assert "Request received by email, logged by staff" in page
    assert "Agent Smith" not in page


def test_the_database_refuses_an_unknown_channel_and_an_agent_check_without_a_staff_member():
    with transaction.atomic(), pytest.raises(IntegrityError):
        RightsRequestFactory(channel="fax")
    rights_request = RightsRequestFactory(by_agent=True)
    with transaction.atomic(), pytest.raises(IntegrityError):
        IdentityCheck.objects.create(
            request=rights_request, step=IdentityStep.AGENT_PERMISSION, method="x", outcome="passed"
        )
    with transaction.atomic(), pytest.raises(IntegrityError):
        IdentityDocument.objects.create(
            request=rights_request, kind="selfie", content="", content_type="image/png", size=0
        )
