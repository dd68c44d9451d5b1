"""After DSR_BLIND_INDEX_KEY changed: recompute every request's email blind index under the new key."""

from django.core.management.base import BaseCommand

from dsr_requests import services


class Command(BaseCommand):
    help = (
        "Recompute the email blind index of every request under the current DSR_BLIND_INDEX_KEY "
        "(run once after changing the key; safe to run again)."
    )

    def handle(self, *args, verbosity, **options):
        def progress(updated, skipped):
            if verbosity > 1:
                self.stdout.write(f"  {updated:,} updated, {skipped:,} without an email so far")

        updated, skipped = services.reindex_email_hashes(
            actor="command:reindex_email_hashes", progress=progress
        )
        if verbosity:
            self.stdout.write(
                f"{updated:,} requests reindexed; "
                f"{skipped:,} hold no email (erased) and keep their old index."
            )
