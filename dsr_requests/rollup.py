"""The dashboard's counts, kept as requests change state rather than counted from the requests table.

Issue 19: the staff dashboard counted every request on each view (open ones per state, received and
completed per month, completion times over twelve months), so it slowed down linearly as requests
accumulated. ``RequestCount`` holds those figures in a few thousand rows at most:

- ``state_changed`` is called where every state change is recorded (``services._event``: the creation
  of a request, ``"" -> submitted``, and every transition), inside the same transaction, so the counts
  are exact and roll back with the change they count. It moves one request from one state's count to
  the other's; on creation it adds the request to its month of receipt; on completion to its month,
  type and whole days taken. Completion is final, so nothing is ever taken out of a month again.
- ``rebuild`` recounts everything from the requests: the migration that adds the tables runs it, and so
  does ``manage.py dsr_rollup`` (after rows were written without the services, by a bulk load, say).
- ``recount`` and ``stored`` give both sides as plain dicts, for the tests and ``dsr_rollup --check``.

Each change is one ``INSERT ... ON CONFLICT DO UPDATE`` (PostgreSQL and SQLite alike; one more query per
state change), rows in a fixed order so two transactions moving requests between the same states cannot
deadlock.
"""

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count
from django.db.models.functions import TruncMonth
from django.utils import timezone

from dsr_requests.models import RequestCount, RequestState, RightsRequest

DAY = timedelta(days=1)
Kind = RequestCount.Kind
KEY = ("kind", "key", "month", "days")


def month_of(moment):
    """The first day of ``moment``'s month, in local time."""
    return timezone.localdate(moment).replace(day=1)


def days_taken(received_at, closed_at):
    """Whole days from receipt to completion, rounded down (what the dashboard ranks)."""
    return max(0, (closed_at - received_at) // DAY)


def _add(rows):
    """Add ``n`` to each ``(kind, key, month, days, n)`` row, creating it at ``n``: one statement."""
    table = connection.ops.quote_name(RequestCount._meta.db_table)
    names = ", ".join(connection.ops.quote_name(name) for name in (*KEY, "count"))
    key = ", ".join(connection.ops.quote_name(name) for name in KEY)
    placeholders = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
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
    never = RequestCount.NOT_MONTHLY
    rows = [(Kind.STATE.value, str(to_state), never, 0, 1)]
    if from_state:
        rows.append((Kind.STATE.value, str(from_state), never, 0, -1))
    else:
        rows.append((Kind.RECEIVED.value, "", month_of(rights_request.received_at), 0, 1))
    if to_state == RequestState.COMPLETED and rights_request.closed_at is not None:
        taken = days_taken(rights_request.received_at, rights_request.closed_at)
        rows.append(
            (
                Kind.COMPLETED.value,
                str(rights_request.request_type),
                month_of(rights_request.closed_at),
                taken,
                1,
            )
        )
    _add(rows)


def recount(*, requests_model=RightsRequest):
    """Every count, from the requests themselves: ``{(kind, key, month, days): n}`` without zeros."""
    requests = requests_model.objects.order_by()
    never = RequestCount.NOT_MONTHLY
    counts = {
        (Kind.STATE.value, state, never, 0): n
        for state, n in requests.values_list("state").annotate(n=Count("id"))
        if n
    }
    received = requests.annotate(month=TruncMonth("received_at")).values_list("month").annotate(n=Count("id"))
    for month, n in received:
        counts[(Kind.RECEIVED.value, "", timezone.localdate(month), 0)] = n
    completed = requests.filter(state=RequestState.COMPLETED, closed_at__isnull=False).values_list(
        "request_type", "received_at", "closed_at"
    )
    for request_type, received_at, closed_at in completed.iterator(chunk_size=5000):
        key = (Kind.COMPLETED.value, request_type, month_of(closed_at), days_taken(received_at, closed_at))
        counts[key] = counts.get(key, 0) + 1
    return counts


def stored():
    """Every count as the rollup holds it, in the shape of ``recount``."""
    return {
        (kind, key, month, days): n
        for kind, key, month, days, n in RequestCount.objects.exclude(count=0).values_list(*KEY, "count")
    }


@transaction.atomic
def rebuild(*, requests_model=RightsRequest, count_model=RequestCount):
    """Replace the rollup by a recount of the requests. The models can be a migration's historical ones."""
    counts = recount(requests_model=requests_model)
    count_model.objects.all().delete()
    count_model.objects.bulk_create(
        (
            count_model(kind=kind, key=key, month=month, days=days, count=n)
            for (kind, key, month, days), n in counts.items()
        ),
        batch_size=2000,
    )
    return counts
