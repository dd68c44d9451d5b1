"""Restore registrations from a backup, in one transaction, after checking the whole file."""

from django.core.management.base import BaseCommand, CommandError

from registrations import backups

OUTCOME_LABELS = {
    "new": "new",
    "updated": "updated",
    "unchanged": "unchanged",
    "newer_in_database": "left alone (newer in the database)",
}


class Command(BaseCommand):
    help = (
        "Verify a backup, then restore its registrations in one transaction (matched by client key), "
        "re-applying the erasure ledger. PATH is a file, or the name of a backup in BACKUP_STORAGE."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", metavar="PATH")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show what would change (new, updated, unchanged, erased again); change nothing.",
        )

    def handle(self, *args, path, dry_run, verbosity, **options):
        progress = backups.progress_printer(self.stdout.write, "checked" if dry_run else "restored")
        try:
            summary = backups.restore_backup(
                path,
                actor="command:restore_registrations",
                dry_run=dry_run,
                progress=progress if verbosity else None,
            )
        except backups.BackupError as exc:
            raise CommandError(f"Refused {path}: {exc}") from None
        manifest = summary.manifest
        self.stdout.write(
            f"Backup taken {manifest['created_at']} with {manifest['row_count']:,} registrations; "
            "its checksum matches."
        )
        for outcome, label in OUTCOME_LABELS.items():
            count = summary.counts[outcome]
            line = f"{label}: {count:,}"
            if count and outcome != "unchanged":
                shown = summary.examples[outcome]
                line += f" ({', '.join(shown)}{', …' if count > len(shown) else ''})"
            self.stdout.write(line)
        if summary.forge_counts:
            forge = ", ".join(f"{n:,} {outcome}" for outcome, n in sorted(summary.forge_counts.items()))
            self.stdout.write(f"Forge installations: {forge}")
        # Sites a rights request erased: counted, never named (their client key was erased too).
        verb = "would erase again" if dry_run else "erased again"
        self.stdout.write(f"{verb} (erasure ledger): {summary.erased_again:,}")
        if summary.kept_pending:
            self.stdout.write(
                f"kept until the app is uninstalled (erasure pending): {summary.kept_pending:,}"
            )
        if summary.reinstalled_since:
            self.stdout.write(
                f"kept, installed again after their erasure (erasure ledger): {summary.reinstalled_since:,}"
            )
        if summary.ledger_other_key:
            self.stdout.write(
                self.style.WARNING(
                    f"{summary.ledger_other_key:,} erasure ledger entries were hashed under another "
                    "DSR_BLIND_INDEX_KEY (or SECRET_KEY) and cannot be matched; see docs/operations.md."
                )
            )
        if dry_run:
            self.stdout.write(self.style.WARNING("Dry run: nothing was changed."))
        else:
            self.stdout.write(self.style.SUCCESS("Restore committed."))
