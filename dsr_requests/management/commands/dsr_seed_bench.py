"""Fill a bench database with synthetic rights requests and events (``dsr_requests.bench_data``)."""

from django.core.management.base import BaseCommand, CommandError

from dsr_requests import bench_data


class Command(BaseCommand):
    help = (
        "Top a BENCH database up to --requests synthetic rights requests (references BEN-...), each with "
        "--events-per-request events, then recount the dashboard's rollup. Never on a real database: it "
        "refuses to run without --bench-database."
    )

    def add_arguments(self, parser):
        parser.add_argument("--requests", type=int, required=True)
        parser.add_argument("--events-per-request", type=int, default=10)
        parser.add_argument("--bench-database", action="store_true", help="confirm this is a bench database")

    def handle(self, *args, requests, events_per_request, bench_database, **options):
        if not bench_database:
            raise CommandError("This fills the database with synthetic requests: add --bench-database.")
        if not 1 <= requests <= 2_000_000 or not 0 <= events_per_request <= 50:
            raise CommandError("--requests must be 1..2000000 and --events-per-request 0..50.")
        added = bench_data.fill(requests=requests, events_per_request=events_per_request)
        have, events = bench_data.existing()
        self.stdout.write(
            f"added {added} requests; the database holds {have} bench requests, {events} events"
        )
