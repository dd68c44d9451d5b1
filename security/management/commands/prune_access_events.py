"""Delete audit rows older than ACCESS_EVENT_RETENTION_DAYS (run daily, e.g. from the scheduler)."""

from django.core.management.base import BaseCommand

from security import services


class Command(BaseCommand):
    help = "Delete access events older than ACCESS_EVENT_RETENTION_DAYS (the only way rows leave the audit)."

    def handle(self, *args, **options):
        deleted = services.prune_access_events()
        self.stdout.write(f"Deleted {deleted} access events older than the retention period.")
