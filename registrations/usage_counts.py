"""Anonymized usage counts off the request path: an atomic counter in Redis, moved to the daily rows later.

Every authenticated Connect (or Forge) call counts one use of its module for the day. Writing that count
to the database on each call cost a round trip on one hot row plus the connection health check, more
than verifying the token itself (docs/benchmarks.md). So when the default cache is Redis (production,
``CACHE_URL=redis://...``) a call only does ``HINCRBY`` on one hash per day (``connect-usage:<day>``,
field = module): one round trip to Redis, atomic, no database connection at all. The
``flush_usage_counts`` command (scheduled every few minutes, docs/operations.md) moves those counts
into ``UsageCount``.

How a flush stays exact, whatever process dies when:

1. The flusher **claims** each day's hash with ``RENAME`` to a batch key with a fresh id
   (``connect-usage-batch:<day>:<id>``). ``RENAME`` is atomic: an increment lands either in the renamed
   hash (and is flushed now) or in a new day hash (flushed next time), never in between.
2. It **applies** a batch in one database transaction that first inserts the batch id into
   ``UsageFlush`` (unique) and then adds each module's count to its daily row. The batch key stays in
   Redis until that transaction has committed.
3. It **releases** the batch key (``DEL``).

A web process that dies after ``HINCRBY`` loses nothing: the count is in Redis, not in the process.
A flusher that dies after claiming leaves the batch key; the next run applies it. One that dies after
committing but before ``DEL`` leaves a batch whose id is already in ``UsageFlush``: the next run sees the
id and only deletes the key. Two flushers at once are safe for the same reason (the second insert of an
id fails and that transaction rolls back). So each counted use reaches the daily rows **exactly once**
as long as Redis keeps its data: a Redis crash loses the counts not yet flushed that Redis itself had
not persisted (``appendonly yes`` keeps them). The counter keys have no expiry, so a Redis with
``maxmemory-policy`` ``volatile-*`` (which evicts only keys with a TTL, i.e. cache entries) never evicts
them; ``allkeys-*`` could.

With any other cache (the per-process development default, ``locmemcache://``) a separate flusher
process could not see the counts and a process exit would lose them, so each use is written straight to
the database in one ``INSERT ... ON CONFLICT`` statement, as before. If Redis fails on the request path,
that same statement records the use instead, so neither the page nor the count is lost (a failure after
Redis received the command, such as a reply that timed out, may count that one use twice).
"""

import contextlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import redis
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from registrations.models import UsageCount, UsageFlush

logger = logging.getLogger("artemis.connect")

DAY_KEY = "connect-usage:"
BATCH_KEY = "connect-usage-batch:"
# Ledger rows outlive any flush run by far; a batch key still in Redis after its row is pruned would need
# every flush for this long to have failed to delete it.
LEDGER_DAYS = 7

# Per thread (Django's cache objects are per thread too): the cache backend it was made for, the process,
# the Redis client, and the one connection the request path keeps for itself.
_held = threading.local()


def _redis():
    """``(cache, client)`` when the default cache is Redis, else ``None``."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    if getattr(_held, "backend", None) is not backend or _held.pid != os.getpid():
        # Django's own client on the primary (write) pool; Django makes a new one on every call.
        _held.backend, _held.pid = backend, os.getpid()
        _held.client = backend._cache.get_client(write=True)
        _held.connection = None
        _held.pending = None
        _held.packed = None
    return backend, _held.client


def buffered():
    """Whether uses are buffered in Redis (and so need ``flush_usage_counts``) or written at once."""
    return _redis() is not None


def record(*, module, day=None):
    """Count one use of ``module`` on ``day`` (today): one Redis ``HINCRBY``, or one SQL upsert.

    The request path keeps one connection from the pool (per thread) and sends the command on it
    directly: taking and returning a pooled connection and redis-py's generic command path cost more
    CPU than the round trip itself (docs/benchmarks.md). The reply is read before returning, so the use
    is in Redis when this returns.
    """
    send(module=module, day=day)
    settle()


def send(*, module, day=None):
    """Send the count of one use (``record``'s first half): with Redis, the ``HINCRBY`` goes out now and
    its reply is read by ``settle``, so the caller can do its own work (render the page) while Redis
    answers, instead of waiting a round trip for it (issue 19, item 1). Without Redis, or if the
    command cannot be sent, the use is written to the database at once."""
    day = day or today()
    found = _redis()
    if found is not None:
        backend, client = found
        settle()  # at most one reply outstanding per connection, so each reply is matched to its use
        try:
            if _held.connection is None:
                _held.connection = client.connection_pool.get_connection()
            _held.connection.send_packed_command(_packed(backend, day, module))
            _held.pending = (day, module)
            return
        except redis.RedisError as error:
            _redis_failed(error)
    _add_counts(day, {module: 1})


def _packed(backend, day, module):
    """The ``HINCRBY`` of one use as Redis reads it (a list of one chunk), made once per day and module
    (packing the command on each call cost a third of counting a use: issue 19, item 1)."""
    made = getattr(_held, "packed", None)
    if made is None or made[0] != day:
        _held.packed = made = (day, {})
    command = made[1].get(module)
    if command is None:
        key = backend.make_key(DAY_KEY + day.isoformat())
        command = made[1][module] = [b"".join(_held.connection.pack_command("HINCRBY", key, module, 1))]
    return command


# (time zone, today, the moments it starts and ends): the local date changes once a day, so it is not
# worked out on every use.
_today = (None, None, 0.0, 0.0)


def today():
    """``timezone.localdate()`` in the default time zone (the one the daily rows are kept in), computed
    again only when the clock is outside the day it last returned (or the time zone setting changed)."""
    global _today
    zone = timezone.get_default_timezone()
    cached_zone, day, starts, ends = _today
    if cached_zone is not zone or not starts <= time.time() < ends:
        day = timezone.localdate(timezone=zone)
        starts, ends = (
            datetime.combine(when, datetime.min.time(), tzinfo=zone).timestamp()
            for when in (day, day + timedelta(days=1))
        )
        _today = (zone, day, starts, ends)
    return day


def settle():
    """Read the reply of the use ``send`` sent, if one is outstanding. If Redis does not answer, the use
    is written to the database instead (it may then count twice, if Redis did apply it)."""
    pending = getattr(_held, "pending", None)
    if pending is None:
        return
    _held.pending = None
    try:
        _held.connection.read_response()
    except redis.RedisError as error:
        _redis_failed(error)
        day, module = pending
        _add_counts(day, {module: 1})


@contextlib.contextmanager
def counting(*, module):
    """Count one use of ``module`` around a block (a Connect or Forge view): the command is sent when the
    block starts and its reply read when it ends, whatever way it ends, before the response leaves."""
    send(module=module)
    try:
        yield
    finally:
        settle()


def _redis_failed(error):
    """Drop the request path's connection (it reconnects on the next use) and say so, without details."""
    if _held.connection is not None:
        _held.connection.disconnect()
    logger.warning("usage count: redis unavailable (%s), written to the database", type(error).__name__)


def _add_counts(day, counts):
    """Add ``{module: n}`` to ``day``'s rows in one ``INSERT ... ON CONFLICT DO UPDATE`` statement.

    Atomic on SQLite (3.24+) and PostgreSQL: no read-modify-write race, no extra query for the first use
    of a day. Django's ``update_conflicts`` cannot express ``count + excluded.count``, hence the SQL.

    On PostgreSQL, when the statement is its own transaction (a single use on the request path), it
    also switches that one transaction to asynchronous commit (``set_config(..., true)`` in a CTE, still
    one statement): a page load then does not wait for a WAL flush. The price is that a database crash
    can lose the last fraction of a second of counts; nothing else is affected. Flushes run inside a
    transaction and keep synchronous commit.
    """
    quote = connection.ops.quote_name
    # Only quoted identifiers from our own model are interpolated; the values are parameters.
    table = quote(UsageCount._meta.db_table)
    day_col, module_col, count_col = (quote(name) for name in ("day", "module", "count"))
    conflict = (
        f"ON CONFLICT ({day_col}, {module_col}) DO UPDATE SET {count_col} = {table}.{count_col} + "
        f"excluded.{count_col}"
    )
    rows = sorted(counts.items())
    params = []
    for module, count in rows:
        params += [connection.ops.adapt_datefield_value(day), module, count]
    if (
        len(rows) == 1
        and connection.vendor == "postgresql"
        and connection.get_autocommit()
        and not connection.in_atomic_block
    ):
        sql = (
            "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true)) "  # noqa: S608
            f"INSERT INTO {table} ({day_col}, {module_col}, {count_col}) "
            f"SELECT %s, %s, %s FROM async_commit {conflict}"
        )
    else:
        values = ", ".join(["(%s, %s, %s)"] * len(rows))
        sql = f"INSERT INTO {table} ({day_col}, {module_col}, {count_col}) VALUES {values} {conflict}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# --- flush ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlushResult:
    """What one flush did: batches applied now, uses they added, batches found already applied."""

    batches: int = 0
    uses: int = 0
    already_applied: int = 0


def _pattern(backend, prefix):
    """A ``SCAN MATCH`` pattern for every key under ``prefix``, the cache's own key prefix escaped."""
    literal = backend.make_key(prefix)
    for special in "\\*?[]":
        literal = literal.replace(special, "\\" + special)
    return literal + "*"


def _scan(client, pattern):
    return sorted({key.decode() for key in client.scan_iter(match=pattern, count=1000)})


def claim():
    """Step 1: rename each day's counter hash to a new batch key; returns every batch key now waiting.

    Includes batches an earlier flusher claimed and did not finish (it died).
    """
    found = _redis()
    if found is None:
        return []
    backend, client = found
    for key in _scan(client, _pattern(backend, DAY_KEY)):
        day = key[len(backend.make_key(DAY_KEY)) :]
        batch = backend.make_key(f"{BATCH_KEY}{day}:{uuid.uuid4().hex}")
        with contextlib.suppress(redis.ResponseError):  # another flusher claimed it first ("no such key")
            client.rename(key, batch)
    return _scan(client, _pattern(backend, BATCH_KEY))


def _batch_parts(backend, key):
    """``(day, batch id)`` of a batch key, or ``None`` for a key of another shape."""
    rest = key[len(backend.make_key(BATCH_KEY)) :]
    day_text, _sep, batch_id = rest.partition(":")
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        return None
    if len(batch_id) != 32:
        return None
    return day, batch_id


def apply(key):
    """Step 2: add one claimed batch to the daily rows, exactly once; returns ``(uses, newly applied)``.

    The batch id goes into ``UsageFlush`` in the same transaction as the counts: if it is already there
    (an earlier run committed and then died), nothing is added. ``None`` for a key that is not a batch.
    """
    backend, client = _redis()
    parts = _batch_parts(backend, key)
    if parts is None:
        return None
    day, batch_id = parts
    counts = {module.decode(): int(count) for module, count in client.hgetall(key).items()}
    counts = {module: count for module, count in counts.items() if count > 0 and module}
    uses = sum(counts.values())
    try:
        with transaction.atomic():
            UsageFlush.objects.create(batch=batch_id, day=day, uses=uses, flushed_at=timezone.now())
            if counts:
                _add_counts(day, counts)
    except IntegrityError:
        return uses, False
    return uses, True


def release(key):
    """Step 3: delete a batch key whose counts are in the database."""
    backend, client = _redis()
    client.delete(key)


def flush(*, actor):
    """Move every buffered use into ``UsageCount`` (steps 1-3), then prune old ledger rows."""
    result = FlushResult()
    for key in claim():
        outcome = apply(key)
        if outcome is None:
            continue
        uses, applied = outcome
        release(key)
        if applied:
            result = FlushResult(result.batches + 1, result.uses + uses, result.already_applied)
        else:
            result = FlushResult(result.batches, result.uses, result.already_applied + 1)
    UsageFlush.objects.filter(flushed_at__lt=timezone.now() - timedelta(days=LEDGER_DAYS)).delete()
    if result.batches or result.already_applied:
        logger.info(
            "usage counts flushed batches=%s uses=%s already_applied=%s actor=%s",
            result.batches,
            result.uses,
            result.already_applied,
            actor,
        )
    return result
