"""A large export's rights-request records read, decrypted and encoded by helper processes, in order.

Why (issue 19, item 4, third round): the export's per-record work (fetching and typing a 45-column row,
seven HMAC checks and decryptions, building the record, its JSON and CSV) ran on one core, while the
machine, like production dynos, has two. Here the worker process (the parent) forks ``EXPORT_PROCESSES``
helpers that do that work for ranges of records while the parent writes the ZIP; the CPU is the same in
all, only spread (docs/benchmarks.md, "Issue 19, item 4, third round").

How: the parent asks once which related tables hold anything about the subject, then reads the ids of
the subject's requests in export order (``received_at``, id), ``SEGMENT_RECORDS`` at a time; for each
such segment it forks the helpers (anew: see ``SEGMENT_RECORDS``) and hands out the segment's ranges of
``RANGE_RECORDS`` ids, keeping ``AHEAD`` queued with each helper. Whenever the oldest range is not
finished and the parent has fewer than ``OWN_AHEAD`` ranges of its own waiting, it encodes the next range
itself instead of waiting (``_segment_batches``), so the work splits by how busy each process is, not by
a fixed ratio (issue 19, item 4, fourth round: a fixed one-in-three share left both processes waiting
for each other much of the time). A helper opens a database connection of its own (the parent's is never
used after the fork: see ``_detach_connections``), reads its range with ``export_records.export_requests``
restricted to those ids (the same code as the single-process path: the same record for the same rows),
encodes it with ``export_encoding`` as the single-process path does, and sends each batch through a pipe
as soon as it is encoded; the parent reads what has arrived between the batches of its own ranges, and
the pipe holds ``RESULT_PIPE_BYTES``, so neither waits for the other. The parent writes the ranges in
order, so the export is byte for byte what the single-process path writes for the same data (tested).

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
import fcntl
import gc
import logging
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
# Ranges the parent may have encoded ahead of the oldest unfinished one (their batches wait in memory,
# about 1.5 MB a range). With one, the parent then waited for the helper about half the time; with two,
# both processes stay busy (measured: 23,000-24,700 against 28,000-28,700 records/s for 20,000 records).
OWN_AHEAD = 2
# Records per batch of a range the parent encodes itself: between two, it reads what the helpers sent.
OWN_BATCH_RECORDS = 64
# Ranges queued per helper. Their ids (8 bytes each) must fit in a pipe's buffer (64 KiB) with room to
# spare, so handing out a range never waits for a helper that is itself waiting for the parent.
AHEAD = 2
assert AHEAD * RANGE_RECORDS * 8 < 48 * 1024  # noqa: S101 (a constant's sanity check)
_BATCH, _END, _FAILED = b"B", b"E", b"X"
# A helper's result pipe holds this much (Linux's default limit for an unprivileged process), so a helper
# can send a few batches ahead while the parent is busy with its own.
RESULT_PIPE_BYTES = 1 << 20

logger = logging.getLogger(__name__)


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


class _Range:
    """One range of a segment, in export order: its encoded batches as they arrive, whether all have."""

    __slots__ = ("batches", "done", "owner")

    def __init__(self, owner, batches=None):
        self.owner = owner  # the ``_Helper`` encoding it, or None: the parent, which encoded it already
        self.batches = deque(batches or ())
        self.done = batches is not None


class _Helper:
    """The parent's end of one helper: its process id, its two pipes and the ranges it was handed (oldest
    first; their batches arrive in that order)."""

    def __init__(self, pid, tasks, results):
        self.pid = pid
        self.tasks = tasks
        self.results = results
        self.ranges = deque()

    def hand(self, ids):
        """Send the helper a range of ids; the ``_Range`` its batches will fill."""
        try:
            self.tasks.send_bytes(array("q", ids).tobytes())
        except OSError:  # it stopped taking work: it failed or was killed
            raise self.failure() from None
        handed = _Range(self)
        self.ranges.append(handed)
        return handed

    def receive(self):
        """Read one message (a batch, or the end of the oldest range) into the oldest range's ``_Range``;
        blocks until the helper sends it."""
        try:
            head = self.results.recv_bytes()
            if head[:1] == _BATCH:
                count, json_size = int.from_bytes(head[1:5], "big"), int.from_bytes(head[5:13], "big")
                text = self.results.recv_bytes()
                if len(text) != json_size:
                    raise ExportHelperFailed("an export helper process sent a damaged batch")
                self.ranges[0].batches.append(Batch(text, self.results.recv_bytes(), count))
                return
        except (EOFError, OSError):
            raise ExportHelperFailed("an export helper process ended before its work was done") from None
        if head == _END and self.ranges:
            self.ranges.popleft().done = True
            return
        name = head[1:80].decode("ascii", "replace") if head[:1] == _FAILED else "unknown message"
        raise ExportHelperFailed(f"an export helper process failed: {name}")

    def receive_ready(self):
        """Read whatever the helper has already sent, without waiting for more."""
        while self.ranges and self.results.poll(0):
            self.receive()

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
    tally = {"ranges": 0, "own": 0}
    # New helpers for every SEGMENT_RECORDS requests (see there).
    while segment := list(islice(ids, SEGMENT_RECORDS)):
        yield from _segment_batches(iter(segment), work, tally)
    logger.info(
        "export helpers: %d ranges, %d of them encoded by the worker itself, %d helper(s)",
        tally["ranges"],
        tally["own"],
        settings.EXPORT_PROCESSES,
    )


def _segment_batches(ids, work, tally):
    """The batches of the requests ``ids`` (an iterator, in export order), from helpers forked for them.

    Each helper always has ``AHEAD`` ranges queued. The parent writes the ranges' batches in order as they
    arrive; when the oldest range is not finished and fewer than ``OWN_AHEAD`` of the parent's own wait,
    it takes the next range itself rather than wait, reading whatever the helpers sent between its own
    batches so that they never wait for it either. So the parent's share follows how busy it is (the ZIP,
    deflate, the machine's other work) rather than a fixed ratio.
    """
    helpers = _start(settings.EXPORT_PROCESSES, **work)
    try:
        ranges = iter(lambda: list(islice(ids, RANGE_RECORDS)), [])
        queue = deque()  # every range handed out or taken, in export order
        own_waiting = 0  # ranges the parent encoded that are not yet written
        while True:
            for helper in helpers:
                while len(helper.ranges) < AHEAD and (chunk := next(ranges, None)) is not None:
                    queue.append(helper.hand(chunk))
                    tally["ranges"] += 1
            if not queue:
                break
            oldest = queue[0]
            while oldest.batches:
                yield oldest.batches.popleft()
            if oldest.done:
                queue.popleft()
                own_waiting -= oldest.owner is None
                continue
            if own_waiting < OWN_AHEAD and (chunk := next(ranges, None)) is not None:
                queue.append(_Range(None, _own_batches(chunk, work, helpers)))
                own_waiting += 1
                tally["ranges"] += 1
                tally["own"] += 1
            else:
                oldest.owner.receive()
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


def _own_batches(ids, work, helpers):
    """A range the parent encodes itself, as a helper would; between its batches it reads what the helpers
    sent meanwhile, so a helper never waits on a full pipe while the parent works."""
    records = _range_records(
        work["requests"], ids, fields=work["fields"], redact=work["redact"], tables=work["tables"]
    )
    batches = []
    for batch in work["encoder"].batches(records, size=OWN_BATCH_RECORDS):
        batches.append(batch)
        for helper in helpers:
            helper.receive_ready()
    return batches


def _start(count, **work):
    """Fork ``count`` helpers, each serving ``_serve(tasks, results, **work)``; the parent's ends."""
    helpers = []
    gc.freeze()  # the objects the helpers inherit stay shared: their collector never writes to them
    try:
        for _number in range(count):
            task_read, task_write = os.pipe()
            result_read, result_write = os.pipe()
            with contextlib.suppress(OSError, AttributeError):  # not Linux, or over the limit: the default
                fcntl.fcntl(result_write, fcntl.F_SETPIPE_SZ, RESULT_PIPE_BYTES)
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
    """Encode each range of ids the parent sends, sending each batch as soon as it is encoded (the parent
    reads them as they come: ``_Helper.receive_ready``), then the range's end; until told to stop."""
    while message := tasks.recv_bytes():
        ids = array("q")
        ids.frombytes(message)
        records = _range_records(requests, ids.tolist(), fields=fields, redact=redact, tables=tables)
        for batch in encoder.batches(records):
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
