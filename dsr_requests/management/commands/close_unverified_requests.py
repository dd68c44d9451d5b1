"""Daily: remind requesters who have not confirmed their email, and close what stays unconfirmed."""

from django.core.management.base import BaseCommand

from dsr_requests import services


class Command(BaseCommand):
    help = (
        "Send the one reminder to requests unconfirmed for DSR_REMINDER_AFTER_DAYS, then close requests "
        "unconfirmed for DSR_CLOSE_UNVERIFIED_AFTER_DAYS and erase their personal data. Run daily."
    )

    def handle(self, *args, **options):
        reminded = services.send_confirmation_reminders()
        closed = services.close_unverified_requests()
        self.stdout.write(f"reminded {reminded}, closed {closed} unconfirmed request(s)")
