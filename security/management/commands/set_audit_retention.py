"""Write ACCESS_EVENT_RETENTION_DAYS into the audit's PostgreSQL guard; run with the owner's URL."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection, transaction

from security import audit_guard


class Command(BaseCommand):
    help = (
        "Rewrite the audit's delete guard (PostgreSQL) with the current ACCESS_EVENT_RETENTION_DAYS. Needs "
        "the table owner: run as DATABASE_URL=$DATABASE_OWNER_URL python manage.py set_audit_retention."
    )

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError("The audit's retention guard exists on PostgreSQL only.")
        days = settings.ACCESS_EVENT_RETENTION_DAYS
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                for statement in audit_guard.postgres_guard_sql(days):
                    cursor.execute(statement)
        except DatabaseError as exc:  # typically "must be owner of function": say which URL to use
            raise CommandError(
                f"Could not rewrite the guard ({type(exc).__name__}); run it with the owner's database URL."
            ) from None
        self.stdout.write(f"The audit's delete guard now keeps events for {days} days.")
