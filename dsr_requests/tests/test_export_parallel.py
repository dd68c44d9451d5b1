"""Issue 19, item 4: a large export read, decrypted and encoded by helper processes (``export_parallel``).

The helpers have their own database connections, so these tests commit their data (``transaction=True``)
and need PostgreSQL; on SQLite the export always runs in one process.
"""

import io
import logging
import os
import re
import signal
import time
import zipfile
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dsr_requests import export_parallel, export_records, exports, providers, services, tokens
from dsr_requests.models import RequestEvent, RequestType, RightsRequest
from dsr_requests.tests import test_exports_complete as complete
from dsr_requests.tests.test_exports_complete import EMAIL, _history

staff_member = complete.staff_member  # the fixture: a staff member whose identity must never appear

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def helpers(settings, monkeypatch):
    """Helpers for any record count, with small ranges so that a test's records span several of them,
    and new helpers every 6 ranges (a segment)."""
    settings.EXPORT_PROCESSES = 2
    settings.EXPORT_PARALLEL_MIN_RECORDS = 1
    monkeypatch.setattr(export_parallel, "RANGE_RECORDS", 150)
    monkeypatch.setattr(export_parallel, "SEGMENT_RECORDS", 900)


def _add_requests(count, *, email=EMAIL, prefix="P"):
    """``count`` earlier requests of the person, each with a staff-only note on its timeline."""
    now = timezone.now()
    earlier = RightsRequest.objects.bulk_create(
        RightsRequest(
            reference=f"DSR-{prefix}{number:05d}",
            request_type=RequestType.REVIEW,
            state="completed",
            name="Ada Lovelace",
            email=email,
            email_hash=tokens.email_blind_index(email),
            details=f"Request {number}: what do you hold about me?",
            # Some received at the same moment: the order then falls back to the id, in every process.
            received_at=now - timezone.timedelta(minutes=number // 3),
        )
        for number in range(count)
    )
    RequestEvent.objects.bulk_create(
        RequestEvent(
            request_id=rights_request.pk,
            from_state="completed",
            to_state="completed",
            actor_kind="staff",
            note=f"Internal note {number} by jane.reviewer",
        )
        for number, rights_request in enumerate(earlier)
    )


def _export_files(rights_request):
    """Write the request's copy export now; its files as the requester gets them."""
    name = f"{rights_request.reference}-zip.export"
    _size, _sha, records = exports.write_export(
        name,
        kind="zip",
        rights_request=rights_request,
        subject=services.subject_for(rights_request),
        providers=providers.all_providers(),
        activities=[],
    )
    plain = b"".join(exports.iter_plain(exports.open_export(name)))
    archive = zipfile.ZipFile(io.BytesIO(plain))
    return records, {member: archive.read(member) for member in archive.namelist()}


def _children():
    """The process ids of this process's children (every thread's)."""
    found = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found.update(int(pid) for pid in (task / "children").read_text().split())
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return found


def test_the_helpers_write_byte_for_byte_the_export_one_process_writes(staff_member, settings, helpers):
    """The same data, exported in one process and by two helpers over several ranges: the same files."""
    rights_request, _earlier, _facts = _history(staff_member, request_type=RequestType.COPY, country="GB")
    _add_requests(700)
    files = {}
    with time_machine.travel(timezone.now(), tick=False):  # the same generated_at in both
        for processes in (0, 2):
            settings.EXPORT_PROCESSES = processes
            before = _children()
            files[processes] = _export_files(rights_request)
            assert _children() == before  # every helper reaped
    records, serial = files[0]
    assert records == 702 and files[2][0] == records
    assert files[2][1] == serial
    assert b"jane.reviewer" not in serial["data.json"]
    assert b"Internal note 699 by staff" in serial["data.json"]


def test_the_export_uses_helpers_only_on_postgresql_outside_a_transaction_from_the_record_count(
    staff_member, settings
):
    from django.db import transaction

    rights_request, _earlier, _facts = _history(staff_member, request_type=RequestType.COPY, country="GB")
    requests = providers.get("rights_requests")._queryset(services.subject_for(rights_request), erased=True)
    settings.EXPORT_PARALLEL_MIN_RECORDS = 2
    assert export_parallel.use_helpers(requests)
    with transaction.atomic():  # a helper would not see what this transaction wrote
        assert not export_parallel.use_helpers(requests)
    settings.EXPORT_PARALLEL_MIN_RECORDS = 3
    assert not export_parallel.use_helpers(requests)
    settings.EXPORT_PARALLEL_MIN_RECORDS, settings.EXPORT_PROCESSES = 2, 0
    assert not export_parallel.use_helpers(requests)


def test_an_export_run_while_other_threads_live_stays_in_its_own_process(staff_member, settings):
    # Forking copies only the calling thread (a lock another thread holds would stay held in the helper):
    # an export run inline by a threaded server never forks.
    import threading

    rights_request, _earlier, _facts = _history(staff_member, request_type=RequestType.COPY, country="GB")
    requests = providers.get("rights_requests")._queryset(services.subject_for(rights_request), erased=True)
    settings.EXPORT_PARALLEL_MIN_RECORDS = 2
    assert export_parallel.use_helpers(requests)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not export_parallel.use_helpers(requests)
    finally:
        release.set()
        other.join()


@pytest.mark.parametrize("how", ["killed", "raises"])
def test_a_helper_that_dies_fails_the_export_with_no_file_and_no_process_left(
    staff_member, helpers, monkeypatch, settings, how
):
    """A helper killed (SIGKILL, as the OOM killer would) or failing on its second range: the export
    raises, nothing is published, no temporary file stays, every helper is gone; the error names the
    exception's type, never its message (which could quote personal data)."""
    rights_request, _earlier, _facts = _history(staff_member, request_type=RequestType.COPY, country="GB")
    _add_requests(600)
    serve = export_parallel._serve

    def failing(tasks, results, **work):
        served = {"ranges": 0}

        class Counting:
            def recv_bytes(self):
                served["ranges"] += 1
                if served["ranges"] == 2:
                    if how == "killed":
                        os.kill(os.getpid(), signal.SIGKILL)
                    raise ValueError("ada@example.org")
                return tasks.recv_bytes()

        serve(Counting(), results, **work)

    monkeypatch.setattr(export_parallel, "_serve", failing)  # forked helpers run this
    before = _children()
    with pytest.raises(export_parallel.ExportHelperFailed) as failure:
        _export_files(rights_request)
    assert _children() == before
    assert "ada@example.org" not in str(failure.value)
    if how == "raises":
        assert str(failure.value).endswith("ValueError")
    folder = Path(settings.EXPORT_DIR)
    assert not folder.exists() or not any(folder.iterdir())  # no export, no temporary file


def test_a_failing_helper_goes_through_the_fulfilment_failure_path(staff_member, helpers, monkeypatch):
    """The job's own retry path counts a helper's failure: no export row, the error recorded, the run to
    be retried."""
    from dsr_requests.models import DataExport, FulfilmentRun

    def failing(tasks, results, **work):
        raise RuntimeError("ada@example.org")

    monkeypatch.setattr(export_parallel, "_serve", failing)
    rights_request, _earlier, _facts = _history(staff_member, request_type=RequestType.COPY, country="GB")
    services.start_fulfilment(rights_request=rights_request, actor=staff_member)
    run = FulfilmentRun.objects.get(request=rights_request)
    assert run.failures >= 1 and run.last_error.startswith("ExportHelperFailed")
    assert "ada@example.org" not in run.last_error
    assert not DataExport.objects.filter(request=rights_request).exists()
    assert RightsRequest.objects.get(pk=rights_request.pk).state != "completed"


def test_a_helpers_range_costs_the_same_queries_whatever_its_size(staff_member):
    """What a helper runs for one range (``export_requests`` with ``ids``): the same 15 queries for 100 or
    900 requests, so a whole export costs the parent a fixed number and the helpers one set per range."""
    rights_request, _earlier, _facts = _history(staff_member, request_type=RequestType.COPY, country="GB")
    _add_requests(900)
    provider = providers.get("rights_requests")
    requests = provider._queryset(services.subject_for(rights_request), erased=True)
    ids = list(requests.order_by("received_at", "pk").values_list("pk", flat=True))
    redact = export_records.StaffRedactor(subject_email=EMAIL)
    counts = {}
    for size in (100, 900):
        keys = ids[:size]
        in_range = RightsRequest.objects.filter(export_records.AnyOf(F("pk"), keys))
        with CaptureQueriesContext(connection) as captured:
            records = export_records.export_requests(
                in_range, fields=provider.fields, redact=redact, ids=keys
            )
            references = [record["reference"] for record in records]
        in_order = RightsRequest.objects.filter(pk__in=keys).order_by("received_at", "pk")
        assert references == list(in_order.values_list("reference", flat=True))
        counts[size] = len(captured)
    assert counts[100] == counts[900] <= 16, counts


def _tally(caplog):
    """What the last parallel export logged: ``(ranges, of them the worker's own, helpers)``."""
    (line,) = [record for record in caplog.records if record.name == "dsr_requests.export_parallel"][-1:]
    return tuple(int(word) for word in re.findall(r"\d+", line.getMessage()))


def test_the_parent_of_a_parallel_export_runs_a_fixed_number_of_queries_plus_one_set_per_own_range(
    staff_member, helpers, caplog
):
    """The parent reads the ids (one query, whatever the count) and whichever ranges it encodes itself at
    one set of queries a range (at most 16); its log line says how the ranges were shared."""
    counts, own = {}, {}
    for count, prefix in ((300, "A"), (1500, "B")):  # 2 ranges of 150; 10
        email = f"parallel{count}@example.org"
        _add_requests(count, email=email, prefix=prefix)
        rights_request = RightsRequest.objects.filter(email_hash=tokens.email_blind_index(email)).first()
        caplog.clear()
        logged = caplog.at_level(logging.INFO, logger="dsr_requests.export_parallel")
        with logged, CaptureQueriesContext(connection) as captured:
            records, _files = _export_files(rights_request)
        assert records == count
        counts[count] = len(captured)
        ranges, own[count], processes = _tally(caplog)
        assert ranges == -(-count // export_parallel.RANGE_RECORDS) and processes == 2
    # Two helpers hold AHEAD ranges each first, so 2 ranges are never the parent's own.
    assert own[300] == 0
    assert 0 <= counts[1500] - counts[300] <= 16 * own[1500], (counts, own)


def test_the_parent_encodes_ranges_itself_while_a_slow_helper_works_and_writes_the_same_bytes(
    staff_member, helpers, settings, monkeypatch, caplog
):
    """A helper much slower than the parent (another job on its core): rather than wait, the parent
    encodes ``OWN_AHEAD`` ranges of each segment itself while the helper works on its first, and the export
    is still byte for byte the one-process export."""
    rights_request, _earlier, _facts = _history(staff_member, request_type=RequestType.COPY, country="GB")
    _add_requests(1400)
    serve = export_parallel._serve

    def slow(tasks, results, **work):
        class Slow:
            def recv_bytes(self):
                time.sleep(0.3)
                return tasks.recv_bytes()

        serve(Slow(), results, **work)

    monkeypatch.setattr(export_parallel, "_serve", slow)
    files = {}
    with time_machine.travel(timezone.now(), tick=False):
        for processes in (0, 1):
            settings.EXPORT_PROCESSES = processes
            with caplog.at_level(logging.INFO, logger="dsr_requests.export_parallel"):
                files[processes] = _export_files(rights_request)
    assert files[1] == files[0]
    ranges, own, _processes = _tally(caplog)
    # 1,402 records: ranges of 150 in two segments (6 and 4 ranges).
    assert ranges == 10 and own >= 2 * export_parallel.OWN_AHEAD


def _state(pid):
    """A process's state letter (``Z``: ended, not yet reaped), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def test_a_helper_whose_worker_is_killed_ends_too(staff_member, helpers, monkeypatch):
    """The worker killed mid-export (SIGKILL: nothing of it runs afterwards): its helper sees its task
    pipe end and exits; none is left running."""
    rights_request, _earlier, _facts = _history(staff_member, request_type=RequestType.COPY, country="GB")
    _add_requests(600)
    read_end, write_end = os.pipe()

    def waiting(tasks, results, **work):  # a helper that says who it is, then waits for work forever
        os.write(write_end, f"{os.getpid()}\n".encode())
        while tasks.recv_bytes():
            pass

    monkeypatch.setattr(export_parallel, "_serve", waiting)
    worker = os.fork()
    if worker == 0:  # pragma: no cover (the stand-in worker: exports until it is killed)
        try:
            os.close(read_end)
            export_parallel._detach_connections()
            _export_files(rights_request)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as announced:
            helper = int(announced.readline())
        assert _state(helper) not in (None, "Z")
    finally:
        os.kill(worker, signal.SIGKILL)
        os.waitpid(worker, 0)
    deadline = time.monotonic() + 20
    while _state(helper) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(helper) in (None, "Z")
