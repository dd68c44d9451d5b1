"""Services of the rights-request intake: transitions, submission, confirmation, identity proof."""

import socket
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from dsr_requests import deadlines, services, tokens
from dsr_requests.models import (
    EmailStatus,
    IdentityCheck,
    IdentityStep,
    RequestEvent,
    RequestState,
    RightsRequest,
    StaffQuestion,
)
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory


@pytest.mark.django_db
def test_transition_changes_state_and_writes_one_event():
    request = RightsRequestFactory(state=RequestState.VERIFYING)
    staff = StaffUserFactory()
    services.transition(rights_request=request, to_state=RequestState.IN_REVIEW, actor=staff, note="ok")
    request.refresh_from_db()
    assert request.state == RequestState.IN_REVIEW
    event = request.events.get()
    assert (event.from_state, event.to_state, event.actor, event.actor_kind) == (
        "verifying",
        "in_review",
        staff,
        RequestEvent.ActorKind.STAFF,
    )


@pytest.mark.django_db
def test_illegal_transition_raises_and_changes_nothing():
    request = RightsRequestFactory(state=RequestState.SUBMITTED)
    with pytest.raises(services.InvalidTransition):
        services.transition(rights_request=request, to_state=RequestState.COMPLETED, actor=services.SYSTEM)
    request.refresh_from_db()
    assert request.state == RequestState.SUBMITTED
    assert not request.events.exists()


@pytest.mark.django_db
def test_on_hold_remembers_and_only_returns_to_the_state_it_came_from():
    request = RightsRequestFactory(state=RequestState.IN_REVIEW)
    staff = StaffUserFactory()
    request = services.transition(
        rights_request=request, to_state=RequestState.ON_HOLD, actor=staff, hold_reason="clarification"
    )
    assert request.held_from_state == RequestState.IN_REVIEW
    with pytest.raises(services.InvalidTransition):
        services.transition(rights_request=request, to_state=RequestState.APPROVED, actor=staff)
    request = services.transition(rights_request=request, to_state=RequestState.IN_REVIEW, actor=staff)
    assert (request.state, request.held_from_state) == (RequestState.IN_REVIEW, "")


@pytest.mark.django_db
def test_transition_refuses_an_actor_that_is_neither_staff_nor_requester_nor_system():
    request = RightsRequestFactory(state=RequestState.VERIFYING)
    with pytest.raises(ValueError):
        services.transition(rights_request=request, to_state=RequestState.WITHDRAWN, actor=None)


# --- Submission and confirmation -------------------------------------------------------------------


def _submit(committed, **overrides):
    fields = {"request_type": "review", "name": "Ada Lovelace", "email": "ada@example.org"}
    fields.update(overrides)
    with committed():
        return services.submit_request(actor=services.REQUESTER, **fields)


@pytest.mark.django_db
def test_submit_stores_the_request_with_blind_index_due_date_event_and_confirmation_email(
    committed, mailoutbox
):
    request = _submit(committed, email="Ada@Example.org")
    request.refresh_from_db()
    assert request.state == RequestState.SUBMITTED
    assert request.email_hash == tokens.email_blind_index("ada@example.org")
    assert request.policy_due_on == deadlines.policy_due_date(timezone.localdate(request.received_at))
    assert list(request.events.values_list("from_state", "to_state", "actor_kind")) == [
        ("", "submitted", "requester")
    ]
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["Ada@Example.org"]
    assert "/requests/confirm/?token=" in message.body
    assert message.alternatives[0][1] == "text/html"
    assert request.emails.get().status == EmailStatus.SENT


@pytest.mark.django_db
def test_confirm_email_moves_to_verifying_records_the_check_and_sends_the_status_link(committed, mailoutbox):
    request = _submit(committed)
    with committed():
        confirmed, token = services.confirm_email(reference=request.reference)
    assert confirmed.state == RequestState.VERIFYING
    assert confirmed.status_token_hash == tokens.status_token_hash(token)
    assert confirmed.identity_checks.get().step == IdentityStep.EMAIL
    assert f"/requests/status/{token}/" in mailoutbox[-1].body


@pytest.mark.django_db
def test_a_processing_request_needs_only_the_email_and_goes_straight_to_review(committed):
    request = _submit(committed, request_type="processing")
    confirmed, _token = services.confirm_email(reference=request.reference)
    assert confirmed.state == RequestState.IN_REVIEW


@pytest.mark.django_db
def test_confirming_twice_is_refused(committed):
    request = _submit(committed)
    services.confirm_email(reference=request.reference)
    with pytest.raises(services.ActionRefused):
        services.confirm_email(reference=request.reference)


@pytest.mark.django_db
def test_identity_steps_follow_the_setting(settings, committed):
    settings.DSR_IDENTITY_STEPS = {**settings.DSR_IDENTITY_STEPS, "review": [["email"]]}
    request = _submit(committed)
    confirmed, _token = services.confirm_email(reference=request.reference)
    assert confirmed.state == RequestState.IN_REVIEW


# --- Atlassian account proof -----------------------------------------------------------------------


def _verifying(**kwargs):
    request = RightsRequestFactory(state=RequestState.VERIFYING, **kwargs)
    IdentityCheck.objects.create(request=request, step="email", method="test", outcome="passed")
    return request


SITE = {"client_key": "tenant-1", "site_url": "https://acme.atlassian.net/wiki", "account_id": "557058:abc"}


@pytest.mark.django_db
def test_account_code_binds_account_and_site_and_moves_to_review(committed, mailoutbox):
    request = _verifying()
    code = services.issue_account_code(rights_request=request)
    with committed():
        bound = services.redeem_account_code(code=code, **SITE)
    assert (bound.state, bound.account_id, bound.site_client_key) == ("in_review", "557058:abc", "tenant-1")
    assert bound.identity_checks.filter(step="account", outcome="passed").exists()
    assert "identity is verified" in mailoutbox[-1].subject


@pytest.mark.django_db
def test_account_code_works_only_once():
    request = _verifying()
    code = services.issue_account_code(rights_request=request)
    services.redeem_account_code(code=code, **SITE)
    with pytest.raises(services.ActionRefused, match="already been used"):
        services.redeem_account_code(code=code, **SITE)


@pytest.mark.django_db
def test_expired_account_code_is_refused():
    request = _verifying()
    code = services.issue_account_code(rights_request=request)
    later = timezone.now() + timedelta(minutes=31)
    with pytest.raises(services.ActionRefused, match="expired"):
        services.redeem_account_code(code=code, now=later, **SITE)


@pytest.mark.django_db
def test_account_code_from_another_site_than_the_request_names_is_refused():
    request = _verifying(site_url="https://other.atlassian.net")
    code = services.issue_account_code(rights_request=request)
    with pytest.raises(services.ActionRefused, match="another Atlassian site"):
        services.redeem_account_code(code=code, **SITE)
    assert not request.account_codes.filter(used_at__isnull=False).exists()


@pytest.mark.django_db
def test_a_new_code_replaces_the_unused_one():
    request = _verifying()
    first = services.issue_account_code(rights_request=request)
    services.issue_account_code(rights_request=request)
    with pytest.raises(services.ActionRefused, match="not valid"):
        services.redeem_account_code(code=first, **SITE)


@pytest.mark.django_db
def test_no_code_for_a_request_that_does_not_need_one():
    request = RightsRequestFactory(state=RequestState.IN_REVIEW)
    with pytest.raises(services.ActionRefused):
        services.issue_account_code(rights_request=request)


# --- Documents, staff decisions, questions ---------------------------------------------------------


@pytest.mark.django_db
def test_document_is_stored_encrypted_and_deleted_when_staff_record_the_decision(committed):
    request = _verifying()
    document = services.add_identity_document(
        rights_request=request, content=b"%PDF-1.7 passport", content_type="application/pdf"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM dsr_requests_identitydocument WHERE id = %s", [document.pk])
        assert b"passport" not in bytes(cursor.fetchone()[0])
    with committed():
        services.record_identity_step(
            rights_request=request,
            step=IdentityStep.DOCUMENT,
            outcome="passed",
            method="passport",
            actor=StaffUserFactory(),
        )
    request.refresh_from_db()
    assert request.state == RequestState.IN_REVIEW
    assert not request.identity_documents.exists()


@pytest.mark.django_db
def test_a_document_left_over_when_the_account_proof_settles_identity_is_deleted():
    request = _verifying()
    services.add_identity_document(
        rights_request=request, content=b"%PDF-1.7 passport", content_type="application/pdf"
    )
    services.redeem_account_code(code=services.issue_account_code(rights_request=request), **SITE)
    request.refresh_from_db()
    assert request.state == RequestState.IN_REVIEW
    assert not request.identity_documents.exists()


@pytest.mark.django_db
def test_a_failed_document_check_keeps_the_request_verifying_and_deletes_the_document():
    request = _verifying()
    services.add_identity_document(
        rights_request=request, content=b"\x89PNG\r\n\x1a\n", content_type="image/png"
    )
    services.record_identity_step(
        rights_request=request, step="document", outcome="failed", method="blurry", actor=StaffUserFactory()
    )
    request.refresh_from_db()
    assert request.state == RequestState.VERIFYING
    assert not request.identity_documents.exists()


@pytest.mark.django_db
def test_answering_the_last_open_question_resumes_a_request_on_hold():
    staff = StaffUserFactory()
    request = RightsRequestFactory(state=RequestState.ON_HOLD, held_from_state=RequestState.IN_REVIEW)
    question = StaffQuestion.objects.create(request=request, question="Which site?", asked_by=staff)
    services.answer_question(question=question, answer="acme.atlassian.net")
    request.refresh_from_db()
    assert request.state == RequestState.IN_REVIEW
    with pytest.raises(services.ActionRefused):
        services.answer_question(question=question, answer="again")


@pytest.mark.django_db
def test_withdraw_ends_the_request_removes_documents_and_tells_the_requester(committed, mailoutbox):
    request = _verifying()
    services.add_identity_document(rights_request=request, content=b"%PDF-", content_type="application/pdf")
    with committed():
        services.withdraw(rights_request=request)
    request.refresh_from_db()
    assert request.state == RequestState.WITHDRAWN
    assert not request.identity_documents.exists()
    assert "withdrawn" in mailoutbox[-1].subject
    with pytest.raises(services.InvalidTransition):
        services.withdraw(rights_request=request)


# --- Unconfirmed requests --------------------------------------------------------------------------


@pytest.mark.django_db
def test_unconfirmed_requests_get_one_reminder_then_are_closed_with_personal_data_erased(
    committed, mailoutbox
):
    request = _submit(committed, details="my details")
    received = request.received_at
    with committed():
        assert services.send_confirmation_reminders(now=received + timedelta(days=3, minutes=1)) == 1
        assert services.send_confirmation_reminders(now=received + timedelta(days=4)) == 0
    assert "Reminder" in mailoutbox[-1].subject
    assert services.close_unverified_requests(now=received + timedelta(days=6)) == 0
    assert services.close_unverified_requests(now=received + timedelta(days=7, minutes=1)) == 1
    request.refresh_from_db()
    assert request.state == RequestState.CLOSED_UNVERIFIED
    assert (request.name, request.email, request.email_hash, request.details) == ("", "", "", "")
    assert all(email.to == "" and email.body_text == "" for email in request.emails.all())


@pytest.mark.django_db
def test_close_unverified_command_reports_what_it_did(committed):
    request = _submit(committed)
    eight_days_ago = timezone.now() - timedelta(days=8)
    RightsRequest.objects.filter(pk=request.pk).update(received_at=eight_days_ago, created_at=eight_days_ago)
    out = StringIO()
    call_command("close_unverified_requests", stdout=out)
    assert out.getvalue().strip() == "reminded 0, closed 1 unconfirmed request(s)"


# --- Outbox ----------------------------------------------------------------------------------------


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
def test_a_failed_send_keeps_the_request_and_retries_with_backoff_until_it_gives_up(settings, committed):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", _closed_port(), 2
    settings.DSR_EMAIL_MAX_ATTEMPTS = 2
    request = _submit(committed)
    assert RightsRequest.objects.filter(pk=request.pk).exists()
    email = request.emails.get()
    assert (email.status, email.attempts, email.last_error) == ("pending", 1, "ConnectionRefusedError")
    assert email.next_attempt_at > timezone.now()
    assert services.send_due_emails() == (0, 0, 0)  # not due yet
    assert services.send_due_emails(now=email.next_attempt_at) == (0, 0, 1)
    email.refresh_from_db()
    assert email.status == "failed" and email.body_text  # never delivered, so nothing is cleared


@pytest.mark.django_db
def test_the_sweep_sends_a_pending_email_once_the_server_answers(settings, committed, mailoutbox):
    backend = settings.EMAIL_BACKEND
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _closed_port()
    request = _submit(committed)
    settings.EMAIL_BACKEND = backend
    email = request.emails.get()
    out = StringIO()
    with time_machine.travel(email.next_attempt_at + timedelta(seconds=1)):
        call_command("send_pending_emails", stdout=out)
    assert out.getvalue().strip() == "sent 1, still pending 0, given up 0"
    email.refresh_from_db()
    assert (email.status, email.body_text, email.body_html) == ("sent", "", "")
    assert len(mailoutbox) == 1
