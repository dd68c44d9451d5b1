"""The email task: sends through the service, and queues its own retry where the backend can defer."""

import socket

import pytest
from django_tasks import default_task_backend

from dsr_requests import tasks
from dsr_requests.models import OutboundEmail
from dsr_requests.tests.factories import RightsRequestFactory


def _pending_email():
    return OutboundEmail.objects.create(
        request=RightsRequestFactory(), event="received", to="ada@example.org", subject="s", body_text="t"
    )


def _refusing_smtp(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port


@pytest.mark.django_db
def test_task_sends_a_pending_email(mailoutbox):
    email = _pending_email()
    assert tasks.send_requester_email.call(email.pk) == "sent"
    assert len(mailoutbox) == 1


@pytest.mark.django_db
def test_task_on_an_already_sent_email_does_nothing(mailoutbox):
    email = _pending_email()
    tasks.send_requester_email.call(email.pk)
    assert tasks.send_requester_email.call(email.pk) is None
    assert len(mailoutbox) == 1


@pytest.mark.django_db
def test_failed_send_is_requeued_for_its_retry_time_when_the_backend_can_defer(settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    _refusing_smtp(settings)
    email = _pending_email()
    assert tasks.send_requester_email.call(email.pk) == "pending"
    email.refresh_from_db()
    (retry,) = default_task_backend.results
    assert retry.args == [email.pk] and retry.task.run_after == email.next_attempt_at
