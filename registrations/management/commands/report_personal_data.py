"""Daily: report stored Atlassian account IDs to Atlassian when the cycle is due; erase closed accounts."""

from datetime import UTC

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from registrations import personal_data


class Command(BaseCommand):
    help = (
        "Report the Atlassian account IDs the portal stores to Atlassian's personal data reporting API "
        "when the cycle Atlassian asked for is due, and erase the data of accounts reported closed. "
        "Run daily; it does nothing until the report is due."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Report now, even if the cycle is not due.")

    def handle(self, *args, force, verbosity, **options):
        self.verbosity = verbosity
        try:
            run = personal_data.report(force=force, progress=self._progress)
        except DatabaseError as exc:
            raise CommandError(f"Database error ({type(exc).__name__}); nothing was scheduled.") from None
        if not run.due:
            self._say(f"Not due until {_when(run.next_due_at)}; nothing sent (--force reports now).")
            return
        if run.unroutable:
            self.stderr.write(
                f"No installed and enabled site to report {run.unroutable} account(s) through; "
                f"trying again after {_when(run.next_due_at)}."
            )
        if run.failed_batches:
            raise CommandError(
                f"{run.failed_batches} of {run.total_batches} batch(es) failed; "
                f"the report is due again after {_when(run.next_due_at)}."
            )
        if not run.accounts:
            self._say("No Atlassian account IDs are stored; nothing to report.")
        elif run.total_batches:
            erased = sum(batch.erased for batch in run.batches)
            self._say(
                f"Reported {run.accounts} account(s) in {run.total_batches} batch(es); "
                f"{erased} record(s) erased for closed accounts. Next report due {_when(run.next_due_at)}."
            )

    def _say(self, line):
        if self.verbosity:  # -v 0: silent unless something failed, as cron expects
            self.stdout.write(line)

    def _progress(self, run, batch):
        if batch.number == 1:
            self._say(f"Reporting {run.accounts} account(s) in {run.total_batches} batch(es).")
        if batch.ok:
            self._say(
                f"batch {batch.number}/{run.total_batches} via {batch.client_key}: {batch.size} account(s), "
                f"{batch.closed} closed (erased), {batch.updated} updated (nothing cached)"
            )
        else:
            self.stderr.write(
                f"batch {batch.number}/{run.total_batches} via {batch.client_key}: {batch.error}"
            )


def _when(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "now"
