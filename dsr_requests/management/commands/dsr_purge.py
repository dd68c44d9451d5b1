"""Daily: remove expired exports, leftover identity documents, and the personal data of old requests."""

from django.core.management.base import BaseCommand, CommandError

from artemis_portal.storage import STORAGE_ERRORS, StorageConfigError
from dsr_requests import services


class Command(BaseCommand):
    help = (
        "Delete expired export files, identity documents left on closed requests and stray export files, "
        "and erase the personal data of requests closed more than DSR_RETENTION_MONTHS ago (a tombstone "
        "stays). Run daily."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be removed; change nothing."
        )

    def handle(self, *args, dry_run=False, verbosity=1, **options):
        prefix = "[dry run] " if dry_run else ""
        progress = (lambda message: self.stdout.write(prefix + message)) if verbosity >= 1 else None
        try:
            result = services.purge(dry_run=dry_run, progress=progress)
        except STORAGE_ERRORS as exc:
            # What was done before the storage failed stays done; the next run carries on.
            raise CommandError(
                f"Purge failed: the export storage did not answer ({type(exc).__name__})."
            ) from None
        except StorageConfigError as exc:  # EXPORT_STORAGE names nothing: say which setting, in one line
            raise CommandError(f"Purge failed: {exc}") from None
        if verbosity >= 1:
            verb = "would remove" if dry_run else "removed"
            self.stdout.write(
                f"{prefix}{verb}: {result.exports} export(s), {result.documents} document(s), "
                f"{result.stray_files} stray file(s); personal data of {result.requests} request(s)"
            )
