"""Recount the dashboard's rollup from the requests, or check it (``dsr_requests.rollup``)."""

from django.core.management.base import BaseCommand, CommandError

from dsr_requests import rollup


class Command(BaseCommand):
    help = (
        "Recount the staff dashboard's counts (requests per state, per month, completion times) from the "
        "requests. With --check, only compare and exit with an error if they differ. The services keep "
        "the counts; this is for rows written without them (a bulk load, a restore)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="compare only; change nothing")

    def handle(self, *args, check, **options):
        if check:
            if rollup.stored() != rollup.recount():
                raise CommandError(
                    "The rollup differs from the requests: run manage.py dsr_rollup to recount."
                )
            self.stdout.write("The rollup matches the requests.")
            return
        counts = rollup.rebuild()
        self.stdout.write(f"Recounted the requests into {len(counts)} rows.")
