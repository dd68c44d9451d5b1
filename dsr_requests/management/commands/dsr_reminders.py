"""Daily: email staff the digest of rights requests due soon, overdue, or due by the statutory date."""

from django.core.management.base import BaseCommand

from dsr_requests import services


class Command(BaseCommand):
    help = (
        "Email staff a digest of rights requests due within five working days, overdue, and those whose "
        "policy date falls after the statutory date without an extension. Run daily."
    )

    def handle(self, *args, **options):
        overdue, soon, flagged, recipients = services.send_staff_digest()
        self.stdout.write(
            f"{overdue} overdue, {soon} due within 5 working days, {flagged} policy after statutory; "
            f"digest sent to {recipients} recipient(s)"
        )
