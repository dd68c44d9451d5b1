"""Write one encrypted backup of every Connect registration (run daily, then prune_backups)."""

from django.core.management.base import BaseCommand, CommandError

from registrations import backups


class Command(BaseCommand):
    help = (
        "Write an encrypted backup of every registration (secrets included, under BACKUP_KEYS) to "
        "BACKUP_STORAGE or BACKUP_DIR."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=int,
            default=backups.BATCH_SIZE,
            help="Registrations read and encrypted at once.",
        )

    def handle(self, *args, batch_size, verbosity, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        progress = backups.progress_printer(self.stdout.write, "backed up") if verbosity else None
        try:
            result = backups.create_backup(
                actor="command:backup_registrations", batch_size=batch_size, progress=progress
            )
        except (backups.BackupError, *backups.STORAGE_ERRORS) as exc:
            raise CommandError(f"Backup failed: {exc}") from None
        if verbosity:  # -v 0: silent on success, as cron expects
            self.stdout.write(
                self.style.SUCCESS(
                    f"Wrote {result.name} to {result.location}: {result.row_count:,} registrations, "
                    f"{result.size:,} bytes, content SHA-256 {result.sha256}"
                )
            )
