"""The dashboard's counts, kept as requests change state rather than counted from the requests table.

Issue 19: the staff dashboard counted every request on each view (open ones per state, received and
completed per month, completion times over twelve months), so it slowed down linearly as requests
accumulated. ``StateCount`` and ``MonthlyCount`` hold those figures in a few rows:

- ``state_changed`` is called where every state change is recorded (``services._event``: the creation
  of a request, ``"" -> submitted``, and every transition), inside the same transaction, so the counts
  are exact and roll back with the change they count. It moves one request from one state's count to
  the other's; on creation it adds the request to its month of receipt; on completion to its month,
  type and whole days taken. Completion is final, so nothing is ever taken out of a month again.
- ``rebuild`` recounts everything from the requests: the migration that adds the tables runs it, and so
  does ``manage.py dsr_rollup`` (after rows were written without the services, by a bulk load, say).
- ``recount`` and ``stored`` give both sides as plain dicts, for the tests and ``dsr_rollup --check``.

Each change is one ``INSERT ... ON CONFLICT DO UPDATE`` per table (PostgreSQL and SQLite alike), rows in
a fixed order so two transactions moving requests between the same states cannot deadlock.
"""

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count
from django.db.models.functions import TruncMonth
from django.utils import timezone

from dsr_requests.models import MonthlyCount, RequestState, RightsRequest, StateCount

DAY = timedelta(days=1)


def month_of(moment):
    """The first day of ``moment``'s month, in local time."""
    return timezone.localdate(moment).replace(day=1)


def days_taken(received_at, closed_at):
    """Whole days from receipt to completion, rounded down (what the dashboard ranks)."""
    return max(0, (closed_at - received_at) // DAY)


def _add(model, columns, rows):
    """Add ``count`` to each row keyed by ``columns`` (creating it at ``count``): one statement."""
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(name) for name in (*columns, "count"))
    key = ", ".join(connection.ops.quote_name(name) for name in columns)
    placeholders = ", ".join(["(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"] * len(rows))
    count = connection.ops.quote_name("count")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({names}) VALUES {placeholders} "  # noqa: S608 (names are ours)
            f"ON CONFLICT ({key}) DO UPDATE SET {count} = {table}.{count} + EXCLUDED.{count}",
            [value for row in sorted(rows) for value in row],
        )


def state_changed(rights_request, *, from_state, to_state):
    """Count one request moving ``from_state`` -> ``to_state`` (``from_state`` empty: just created)."""
    if from_state == to_state:
        return
    moves = [(to_state, 1)] + ([(from_state, -1)] if from_state else [])
    _add(StateCount, ("state",), moves)
    months = []
    if not from_state:
        months.append((MonthlyCount.Kind.RECEIVED, month_of(rights_request.received_at), "", 0, 1))
    if to_state == RequestState.COMPLETED and rights_request.closed_at is not None:
        months.append(
            (
                MonthlyCount.Kind.COMPLETED,
                month_of(rights_request.closed_at),
                rights_request.request_type,
                days_taken(rights_request.received_at, rights_request.closed_at),
                1,
            )
        )
    _add(MonthlyCount, ("kind", "month", "request_type", "days"), months)


def recount(*, requests_model=RightsRequest):
    """``(states, months)`` counted from the requests themselves, in the shape ``stored`` returns."""
    requests = requests_model.objects.order_by()
    states = {state: n for state, n in requests.values_list("state").annotate(n=Count("id")) if n}
    months = {}
    received = requests.annotate(month=TruncMonth("received_at")).values_list("month").annotate(n=Count("id"))
    for month, n in received:
        key = (
            MonthlyCount.Kind.RECEIVED.value,
            timezone.localdate(month) if hasattr(month, "hour") else month,
        )
        months[(*key, "", 0)] = n
    completed = requests.filter(state=RequestState.COMPLETED, closed_at__isnull=False).values_list(
        "request_type", "received_at", "closed_at"
    )
    for request_type, received_at, closed_at in completed.iterator(chunk_size=5000):
        key = (
            MonthlyCount.Kind.COMPLETED.value,
            month_of(closed_at),
            request_type,
            days_taken(received_at, closed_at),
        )
        months[key] = months.get(key, 0) + 1
    return states, months


def stored():
    """``(states, months)`` as the rollup holds them, leaving out zero counts."""
    states = dict(StateCount.objects.filter(count__gt=0).values_list("state", "count"))
    months = {
        (kind, month, request_type, days): n
        for kind, month, request_type, days, n in MonthlyCount.objects.filter(count__gt=0).values_list(
            "kind", "month", "request_type", "days", "count"
        )
    }
    return states, months


@transaction.atomic
def rebuild(*, requests_model=RightsRequest, state_model=StateCount, month_model=MonthlyCount):
    """Replace the rollup by a recount of the requests. The models can be a migration's historical ones."""
    states, months = recount(requests_model=requests_model)
    state_model.objects.all().delete()
    month_model.objects.all().delete()
    state_model.objects.bulk_create(state_model(state=state, count=n) for state, n in states.items())
    month_model.objects.bulk_create(
        (
            month_model(kind=kind, month=month, request_type=request_type, days=days, count=n)
            for (kind, month, request_type, days), n in months.items()
        ),
        batch_size=2000,
    )
    return states, months
