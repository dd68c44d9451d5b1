"""Background entry points of the intake; each only calls a service."""

from django.conf import settings
from django_tasks import default_task_backend, task

from dsr_requests import services
from dsr_requests.models import EmailStatus, OutboundEmail


@task()
def send_requester_email(email_id):
    """Send one outbox email; if it stays pending, queue the retry when the backend can defer.

    With a backend that cannot defer (the inline one), the ``send_pending_emails`` sweep retries.
    """
    status = services.deliver_email(email_id=email_id)
    if status == EmailStatus.PENDING and default_task_backend.supports_defer:
        retry_at = OutboundEmail.objects.values_list("next_attempt_at", flat=True).get(pk=email_id)
        send_requester_email.using(run_after=retry_at).enqueue(email_id)
    return status


@task()
def send_lost_links(email_hash):
    """Send the links the lost-link page promised; the job holds the address's blind index only.

    Returns nothing: whether the address had requests must not be readable from the queue either.
    """
    services.send_links(email_hash=email_hash)


@task()
def fulfil_request(request_id):
    """Carry out an approved request; after a failure, retry DSR_FULFILMENT_RETRY_SECONDS later (or at
    once, inline).

    Returns only an outcome word: a task's result is stored by the queue and must hold no personal data.
    """
    from datetime import timedelta

    from django.utils import timezone

    while True:
        outcome = services.run_fulfilment(request_id=request_id)
        if outcome != services.RUN_RETRY:
            return outcome
        if fulfil_request.get_backend().supports_defer:
            retry_at = timezone.now() + timedelta(seconds=settings.DSR_FULFILMENT_RETRY_SECONDS)
            services.enqueue_fulfilment(request_id, run_after=retry_at)
            return outcome
