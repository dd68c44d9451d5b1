"""Delete the backups the retention rule (7 daily, 8 weekly, 12 monthly) no longer keeps."""

from django.core.management.base import BaseCommand, CommandError

from registrations import backups


class Command(BaseCommand):
    help = (
        "Keep the newest backup of each of the last 7 days, 8 ISO weeks and 12 months (UTC); delete the rest."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be deleted; delete nothing."
        )

    def handle(self, *args, dry_run, verbosity, **options):
        try:
            plan = backups.prune_backups(actor="command:prune_backups", dry_run=dry_run)
        except (backups.BackupError, *backups.STORAGE_ERRORS) as exc:
            raise CommandError(f"Prune failed: {exc}") from None
        if verbosity > 1 or dry_run:
            for name, reasons in sorted(plan.keep.items()):
                self.stdout.write(f"keep    {name} ({', '.join(reasons)})")
        if not (verbosity or dry_run):  # -v 0: silent on success, as cron expects
            return
        for name in plan.delete:
            self.stdout.write(f"delete  {name}")
        for name in plan.ignored:
            self.stdout.write(f"ignored {name} (not a backup's name)")
        summary = f"{len(plan.keep)} kept, {len(plan.delete)} "
        summary += "would be deleted (dry run: nothing was deleted)" if dry_run else "deleted"
        self.stdout.write(self.style.SUCCESS(summary))
