"""Background entry points of the intake; each only calls a service."""

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
