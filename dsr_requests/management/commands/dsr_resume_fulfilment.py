"""Every few minutes: queue again the fulfilment jobs whose worker died (killed, redeployed)."""

from django.core.management.base import BaseCommand

from dsr_requests import services


class Command(BaseCommand):
    help = (
        "Queue again every fulfilment still running with no progress for DSR_FULFILMENT_STALE_MINUTES "
        "(its worker died); the job resumes from the first step not done. Run every few minutes."
    )

    def handle(self, *args, verbosity=1, **options):
        references = services.resume_stalled_fulfilment()
        if verbosity >= 1:
            self.stdout.write(
                f"queued again: {len(references)} fulfilment(s) {' '.join(references)}".rstrip()
            )
