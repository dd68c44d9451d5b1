"""Every few minutes: move the usage counts buffered in Redis into the daily ``UsageCount`` rows."""

import redis
from django.core.management.base import BaseCommand, CommandError

from registrations import services, usage_counts


class Command(BaseCommand):
    help = (
        "Move the anonymized usage counts buffered in Redis into the daily rows (exactly once, safe to run "
        "twice or after a crash). Run every few minutes; nothing to do with a per-process cache."
    )

    def handle(self, *args, verbosity, **options):
        if not usage_counts.buffered():
            if verbosity:
                self.stdout.write(
                    "Usage counts are written to the database directly (CACHE_URL is not Redis)."
                )
            return
        try:
            result = services.flush_usage_counts(actor="flush_usage_counts")
        except redis.RedisError as exc:
            # Nothing is lost: the counts stay in Redis for the next run.
            raise CommandError(
                f"Redis unavailable ({type(exc).__name__}); the counts stay buffered."
            ) from None
        if verbosity:  # -v 0: silent on success, as cron expects
            self.stdout.write(
                f"Flushed {result.batches} batches, {result.uses} uses; "
                f"{result.already_applied} already applied by an earlier run."
            )
