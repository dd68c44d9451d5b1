"""Every few minutes: send requester emails whose earlier attempt failed or was never queued."""

from django.core.management.base import BaseCommand

from dsr_requests import services


class Command(BaseCommand):
    help = "Send pending requester emails that are due (retries with backoff). Run every few minutes."

    def handle(self, *args, **options):
        sent, pending, failed = services.send_due_emails()
        self.stdout.write(f"sent {sent}, still pending {pending}, given up {failed}")
