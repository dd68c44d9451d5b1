"""Decrypt every backup and check it against its manifest; exit non-zero if any fails."""

from django.core.management.base import BaseCommand, CommandError

from registrations import backups


class Command(BaseCommand):
    help = "Decrypt every backup, check its manifest, row count and SHA-256, and report each."

    def handle(self, *args, verbosity, **options):
        try:
            storage = backups.backup_storage()
            results = list(self._report(backups.verify_backups(storage=storage), quiet=not verbosity))
        except (backups.BackupError, *backups.STORAGE_ERRORS) as exc:
            raise CommandError(f"Verify failed: {exc}") from None
        failed = [r for r in results if not r.ok]
        if not results:
            raise CommandError(f"No backups found in {backups.describe_storage(storage)}.")
        if failed:
            raise CommandError(f"{len(failed)} of {len(results)} backups failed verification.")
        if verbosity:  # -v 0: silent on success, as cron expects
            self.stdout.write(self.style.SUCCESS(f"All {len(results)} backups verified."))

    def _report(self, results, *, quiet):
        for result in results:
            if not result.ok:
                self.stdout.write(self.style.ERROR(f"FAILED  {result.name}: {result.error}"))
            elif not quiet:
                manifest = result.manifest
                self.stdout.write(
                    f"OK      {result.name}: {manifest['row_count']:,} registrations, "
                    f"taken {manifest['created_at']}, SHA-256 {manifest['sha256'][:16]}…"
                )
            yield result
