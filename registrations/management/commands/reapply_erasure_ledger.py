"""Re-apply the erasure ledger to the whole registry (after it was brought back other than by restore)."""

from django.core.management.base import BaseCommand

from registrations import erasure_ledger


class Command(BaseCommand):
    help = (
        "Delete every registration the erasure ledger names as erased (restore_registrations does this "
        "itself; run this after the registrations table was restored by other means)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be erased; change nothing."
        )

    def handle(self, *args, dry_run, verbosity, **options):
        result = erasure_ledger.reapply_erasure_ledger(
            actor="command:reapply_erasure_ledger", dry_run=dry_run
        )
        if result.other_key_entries:
            self.stderr.write(
                self.style.WARNING(
                    f"{result.other_key_entries:,} erasure ledger entries were hashed under another "
                    "DSR_BLIND_INDEX_KEY (or SECRET_KEY) and cannot be matched; see docs/operations.md."
                )
            )
        if verbosity:
            verb = "would erase again" if dry_run else "erased again"
            self.stdout.write(f"{verb} (erasure ledger): {result.erased_again:,}")
            self.stdout.write(f"kept until the app is uninstalled (erasure pending): {result.kept_pending:,}")
            self.stdout.write(f"kept, installed again after their erasure: {result.reinstalled_since:,}")
