"""A large export's rights-request records read, decrypted and encoded by helper processes, in order.

Why (issue 19, item 4, third round): the export's per-record work (fetching and typing a 45-column row,
seven HMAC checks and decryptions, building the record, its JSON and CSV) ran on one core, while the
machine, like production dynos, has two. Here the worker process (the parent) forks ``EXPORT_PROCESSES``
helpers that do that work for ranges of records while the parent writes the ZIP; the CPU is the same in
all, only spread (docs/benchmarks.md, "Issue 19, item 4, third round").

How: the parent asks once which related tables hold anything about the subject, then reads the ids of
the subject's requests in export order (``received_at``, id), ``SEGMENT_RECORDS`` at a time; for each
such segment it forks the helpers (anew: see ``SEGMENT_RECORDS``) and hands out the segment's ranges of
``RANGE_RECORDS`` ids: ``PARENT_EVERY`` to each helper in turn, then one it encodes itself, at most
``AHEAD`` queued per helper. A helper opens a database connection of its own (the parent's is never used
after the fork: see ``_detach_connections``), reads its range with ``export_records.export_requests``
restricted to those ids (the same code as the single-process path: the same record for the same rows),
encodes it with ``export_encoding`` as the single-process path does, and sends the range's batches back
through a pipe once the whole range is encoded (so it does not wait for the parent before starting the
next). The parent takes the ranges in order, so the export is byte for byte what the single-process
path writes for the same data (tested).

Personal data crosses between the processes only through pipes (memory), never a file. A helper that
fails sends the name of the exception (never its message, which could quote data) and exits; one that
is killed closes its pipe: either way the parent raises ``ExportHelperFailed``, the export's file is not
published (``storage.publish``), the job's failure path counts it, and every helper is killed and reaped
(``_stop``) before the exception leaves this module. A helper whose parent dies gets a broken pipe or
the end of its task pipe and exits.

When: in a single-threaded process (the worker), on PostgreSQL, outside a transaction (a helper's
connection would not see the parent's uncommitted rows), with ``EXPORT_PROCESSES`` at least 1 and at
least ``EXPORT_PARALLEL_MIN_RECORDS`` records.
Otherwise, and always on SQLite (the default development database, where an in-memory test database
cannot be opened by a second process), the records are read and encoded in the worker's own process.
"""

import contextlib
import gc
import os
import signal
import threading
from array import array
from collections import deque
from itertools import islice
from multiprocessing.connection import Connection

from django.conf import settings
from django.db import connections
from django.db.models import F

from dsr_requests import export_records
from dsr_requests.export_encoding import Batch, RecordEncoder

# Records per range handed to a helper: a helper holds one range's text (about 2.5 KB a record).
RANGE_RECORDS = 1000
# Helpers are forked anew for every this many records: a forked helper shares the worker's memory
# pages until either writes to one, so the longer a pair runs the more pages each holds a copy of
# (measured with one helper: 31 MiB of PSS over idle at 20,000 records, 62 MiB at 200,000).
SEGMENT_RECORDS = 20 * RANGE_RECORDS
# For every PARENT_EVERY ranges each helper encodes, the parent encodes one itself.
PARENT_EVERY = 2
# Ranges queued per helper. Their ids (8 bytes each) must fit in a pipe's buffer (64 KiB) with room to
# spare, so handing out a range never waits for a helper that is itself waiting for the parent.
AHEAD = 2
assert AHEAD * RANGE_RECORDS * 8 < 48 * 1024  # noqa: S101 (a constant's sanity check)
_BATCH, _END, _FAILED = b"B", b"E", b"X"


class ExportHelperFailed(RuntimeError):
    """A helper process of a parallel export failed or was killed; the export is not written."""


def use_helpers(requests):
    """Whether the export of ``requests`` (a queryset) runs in helper processes (see the module's "When")."""
    connection = connections[requests.db]
    return bool(
        settings.EXPORT_PROCESSES
        # Forking copies only the calling thread: a lock another thread holds (logging, a connection
        # pool) would stay held forever in the helper. The worker (``db_worker``) is single-threaded;
        # an export run inline by a threaded server (the development task backend) stays in-process.
        and threading.active_count() == 1
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and requests.count() >= settings.EXPORT_PARALLEL_MIN_RECORDS
    )


def request_batches(requests, *, fields, nested, with_csv, redact):
    """The export records of ``requests`` (``export_records.export_requests``), encoded as ``Batch``es in
    export order: by ``EXPORT_PROCESSES`` helper processes when ``use_helpers``, else in this process."""
    encoder = RecordEncoder(fields, nested=nested, with_csv=with_csv)
    if use_helpers(requests):
        return _parallel_batches(requests, encoder=encoder, fields=fields, redact=redact)
    return encoder.batches(export_records.export_requests(requests, fields=fields, redact=redact))


class _Helper:
    """The parent's end of one helper: its process id and its two pipes."""

    def __init__(self, pid, tasks, results):
        self.pid = pid
        self.tasks = tasks
        self.results = results

    def receive(self):
        """The batches of the range this helper was handed earliest, in order."""
        while True:
            try:
                head = self.results.recv_bytes()
                if head[:1] == _BATCH:
                    count, json_size = int.from_bytes(head[1:5], "big"), int.from_bytes(head[5:13], "big")
                    text = self.results.recv_bytes()
                    if len(text) != json_size:
                        raise ExportHelperFailed("an export helper process sent a damaged batch")
                    yield Batch(text, self.results.recv_bytes(), count)
                    continue
            except (EOFError, OSError):
                raise ExportHelperFailed("an export helper process ended before its work was done") from None
            if head == _END:
                return
            name = head[1:80].decode("ascii", "replace") if head[:1] == _FAILED else "unknown message"
            raise ExportHelperFailed(f"an export helper process failed: {name}")

    def failure(self):
        """Once the helper stopped taking work: what it reported before it ended, if anything."""
        try:
            while True:
                head = self.results.recv_bytes()
                if head[:1] == _FAILED:
                    name = head[1:80].decode("ascii", "replace")
                    return ExportHelperFailed(f"an export helper process failed: {name}")
        except (EOFError, OSError):
            return ExportHelperFailed("an export helper process ended before its work was done")


def _parallel_batches(requests, *, encoder, fields, redact):
    # Which related tables hold anything about the subject, asked once here rather than by every range.
    tables = export_records.tables_with_rows(requests)
    work = {"requests": requests, "encoder": encoder, "fields": fields, "redact": redact, "tables": tables}
    in_order = requests.order_by("received_at", "pk").values_list("pk", flat=True)
    ids = in_order.iterator(chunk_size=RANGE_RECORDS)
    # New helpers for every SEGMENT_RECORDS requests (see there).
    while segment := list(islice(ids, SEGMENT_RECORDS)):
        yield from _segment_batches(iter(segment), work)


def _segment_batches(ids, work):
    """The batches of the requests ``ids`` (an iterator, in export order), from helpers forked for them."""
    helpers = _start(settings.EXPORT_PROCESSES, **work)
    try:
        # Range i goes to slot i % slots: PARENT_EVERY ranges per helper, then one the parent encodes
        # itself (it has time to spare between writing the helpers' batches).
        slots = len(helpers) * PARENT_EVERY + 1
        queue = deque()  # per range, in order: (helper number, None) or (None, the parent's ids)
        outstanding = [0] * len(helpers)
        handed = 0

        def hand_out():
            nonlocal handed
            while True:
                slot = handed % slots
                owner = None if slot == slots - 1 else slot % len(helpers)
                if owner is not None and outstanding[owner] >= AHEAD:
                    return
                chunk = list(islice(ids, RANGE_RECORDS))
                if not chunk:
                    return
                handed += 1
                if owner is None:
                    queue.append((None, chunk))
                    continue
                helper = helpers[owner]
                try:
                    helper.tasks.send_bytes(array("q", chunk).tobytes())
                except OSError:  # it stopped taking work: it failed or was killed
                    raise helper.failure() from None
                outstanding[owner] += 1
                queue.append((owner, None))

        hand_out()
        while queue:
            owner, own = queue.popleft()
            if owner is None:
                yield from _own_batches(own, work)
            else:
                yield from helpers[owner].receive()
                outstanding[owner] -= 1
            hand_out()
        for helper in helpers:
            try:
                helper.tasks.send_bytes(b"")  # done: the helper closes its connection and exits
            except OSError:
                raise helper.failure() from None
        for helper in helpers:
            _pid, status = os.waitpid(helper.pid, 0)
            helper.pid = None
            if status:
                raise ExportHelperFailed("an export helper process did not exit cleanly")
    finally:
        _stop(helpers)


def _own_batches(ids, work):
    """A range the parent encodes itself, as a helper would."""
    records = _range_records(
        work["requests"], ids, fields=work["fields"], redact=work["redact"], tables=work["tables"]
    )
    return work["encoder"].batches(records)


def _start(count, **work):
    """Fork ``count`` helpers, each serving ``_serve(tasks, results, **work)``; the parent's ends."""
    helpers = []
    gc.freeze()  # the objects the helpers inherit stay shared: their collector never writes to them
    try:
        for _number in range(count):
            task_read, task_write = os.pipe()
            result_read, result_write = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover (runs in the helper; its effects are tested)
                try:
                    inherited = [task_write, result_read]
                    for helper in helpers:
                        inherited += [helper.tasks.fileno(), helper.results.fileno()]
                    _helper_main(task_read, result_write, inherited, work)
                finally:
                    os._exit(1)  # never back into the parent's code
            os.close(task_read)
            os.close(result_write)
            helpers.append(
                _Helper(
                    pid,
                    Connection(task_write, readable=False),
                    Connection(result_read, writable=False),
                )
            )
    except BaseException:
        _stop(helpers)
        raise
    finally:
        gc.unfreeze()
    return helpers


def _helper_main(task_read, result_write, inherited, work):  # pragma: no cover (runs in the helper)
    """The helper process: never returns (``os._exit``), so nothing of the parent's is cleaned up here."""
    code = 1
    results = Connection(result_write, readable=False)
    try:
        for fd in inherited:  # the parent's ends: a helper holding them would hide the parent's death
            os.close(fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _detach_connections()
        _serve(Connection(task_read, writable=False), results, **work)
        code = 0
    except BaseException as exc:  # noqa: BLE001 (reported to the parent by name, then the helper exits)
        # The parent may be gone or not reading: then there is nobody to tell.
        with contextlib.suppress(BaseException):
            results.send_bytes(_FAILED + type(exc).__name__.encode("ascii", "replace"))
    finally:
        try:
            connections.close_all()  # the helper's own connections, not the parent's (detached)
        finally:
            os._exit(code)


# The parent's database connections as a helper inherited them: kept referenced, never closed, so the
# helper never ends (or sends anything on) the parent's session. ``os._exit`` skips their finalizers.
_INHERITED = []


def _detach_connections():
    """Forget the parent's connections in this (forked) process; the next query opens one of its own."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _INHERITED.append(connection.connection)
            connection.connection = None


def _serve(tasks, results, *, requests, encoder, fields, redact, tables):  # pragma: no cover (in the helper)
    """Encode each range of ids the parent sends, whole, then send its batches; until told to stop."""
    while message := tasks.recv_bytes():
        ids = array("q")
        ids.frombytes(message)
        records = _range_records(requests, ids.tolist(), fields=fields, redact=redact, tables=tables)
        batches = list(encoder.batches(records))
        for batch in batches:
            results.send_bytes(_BATCH + batch.count.to_bytes(4, "big") + len(batch.json).to_bytes(8, "big"))
            results.send_bytes(batch.json)
            results.send_bytes(batch.csv)
        results.send_bytes(_END)


def _range_records(requests, ids, *, fields, redact, tables):
    """The export records of the requests ``ids`` (a range, in export order), read by their keys alone.

    Not the subject's filter again: the parent read the ids from it a moment ago, and with it PostgreSQL
    would scan all the subject's requests for each range instead of looking up the range's keys.
    """
    literal = export_records.id_array(ids)
    in_range = requests.model.objects.filter(export_records.AnyOf(F("pk"), literal))
    return export_records.export_requests(in_range, fields=fields, redact=redact, ids=literal, tables=tables)


def _stop(helpers):
    """Close the pipes and kill and reap every helper still running: none is left behind."""
    for helper in helpers:
        for end in (helper.tasks, helper.results):
            with contextlib.suppress(OSError):
                end.close()
        if helper.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(helper.pid, 0)
            helper.pid = None
