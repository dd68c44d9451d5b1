#!/usr/bin/env python3
"""Benchmark: a copy export of one subject with many records, by a real db_worker (time and memory).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        /path/to/venv/bin/python bench/fulfilment_export.py --records 20000 200000

For each size it creates a scratch database on the server DATABASE_URL names
(``artemis_bench_fulfilment_<pid>``), migrates it, and fills it with that many earlier rights requests of
one person (real rows, fields encrypted as in production), plus one approved copy request. Then it starts
``manage.py db_worker`` (DEBUG off, as in production), reads the worker's idle resident memory once it
is waiting for work, queues the fulfilment, and waits for the request to complete. The time is from
queuing to completion. Memory counts the whole process tree: the worker and the helper processes it
forks for a large export (``dsr_requests/export_parallel.py``), sampled every 20 ms while the export
runs: the peak of the tree's summed RSS (which counts the pages a forked helper shares with the worker
once per process, so it overstates), and the peak of its summed PSS (``/proc/<pid>/smaps_rollup``:
each shared page divided among the processes sharing it, so the sum is the tree's physical memory),
each against the idle worker's; and the worker's own VmHWM. The scratch database and export folder are
removed at the end. Prints a Markdown table.

``--sample-ms 0`` measures the time alone: no memory samples (reading ``smaps_rollup`` of a 100 MiB
process every 20 ms costs CPU the export shares two cores with), only the request's state every 50 ms.
"""

import argparse
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
SEED_BATCH = 5000


def with_database(url, name):
    """``url`` pointing at database ``name`` on the same server."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def admin_sql(url, statement):
    """Run one statement on the server's maintenance database (CREATE / DROP DATABASE)."""
    import psycopg2

    connection = psycopg2.connect(with_database(url, "postgres"))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def proc_kib(pid, field):
    """A /proc/<pid>/status memory field (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def tree(pid):
    """``pid`` and its descendants' process ids."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # it ended meanwhile
            continue
    return found


def tree_kib(pid):
    """``(summed VmRSS, summed Pss)`` in KiB of ``pid`` and its descendants, now."""
    rss = pss = 0
    for member in tree(pid):
        try:
            rss += proc_kib(member, "VmRSS")
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, RuntimeError):  # it ended meanwhile
            continue
    return rss, pss


def seed(records):
    """Migrate, add ``records`` earlier requests of one person and an approved copy request; return its id."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from dsr_requests import roles, services, tokens
    from dsr_requests.models import RequestState, RequestType, RightsRequest

    email = "bench.subject@example.org"
    email_hash = tokens.email_blind_index(email)
    now = timezone.now()
    for start in range(0, records, SEED_BATCH):
        RightsRequest.objects.bulk_create(
            RightsRequest(
                reference=f"DSR-{number:06d}",
                request_type=RequestType.REVIEW,
                state=RequestState.COMPLETED,
                name="Bench Subject",
                email=email,
                email_hash=email_hash,
                details=f"Request number {number}: what do you hold about me?",
                received_at=now,
                closed_at=now,
            )
            for number in range(start, min(start + SEED_BATCH, records))
        )
    approver = get_user_model().objects.create(username="bench-approver", is_staff=True)
    approver.groups.add(Group.objects.get(name=roles.APPROVER))
    token, token_hash = tokens.new_status_token()
    rights_request = RightsRequest.objects.create(
        reference="DSR-BENCH0",
        request_type=RequestType.COPY,
        state=RequestState.IN_REVIEW,
        name="Bench Subject",
        email=email,
        email_hash=email_hash,
        received_at=now,
        email_confirmed_at=now,  # the completion email goes only to a confirmed address
        status_token_hash=token_hash,
    )
    services.approve(rights_request=rights_request, actor=approver)
    return rights_request.pk, approver


def run_one(base_url, records, export_dir, sample_ms):
    """Seed a scratch database, run the export in a worker; return (seconds, tree RSS idle and peak, tree
    PSS idle and peak, worker VmHWM, the most processes seen, file size) in MiB, and the load average."""
    name = f"artemis_bench_fulfilment_{os.getpid()}"
    admin_sql(base_url, f"DROP DATABASE IF EXISTS {name}")
    admin_sql(base_url, f"CREATE DATABASE {name}")
    env = {
        **os.environ,
        "DATABASE_URL": with_database(base_url, name),
        "TASKS_BACKEND": "database",
        "EXPORT_DIR": str(export_dir),
        "EXPORT_STORAGE": "",  # the local folder, whatever .env says: the bench measures the worker's memory
        "EMAIL_URL": "dummymail://",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "localhost",
        "APP_BASE_URL": "https://localhost",
    }
    child = subprocess.run(
        [sys.executable, __file__, "--child", str(records), "--sample-ms", str(sample_ms)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    try:
        if child.returncode:
            raise RuntimeError(child.stderr[-2000:])
        return tuple(float(value) for value in child.stdout.split())
    finally:
        admin_sql(base_url, f"DROP DATABASE IF EXISTS {name}")


def child(records, sample_ms):
    """In the scratch database's environment: seed, start a worker, measure, print the numbers."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artemis_portal.settings")
    sys.path.insert(0, str(ROOT))
    request_id, approver = seed(records)
    from django.db import connection

    from dsr_requests import services
    from dsr_requests.models import DataExport, RightsRequest

    connection.close()
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "--interval", "0.1", "--no-startup-delay", "--no-reload"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(5)  # imports done, waiting for work
        idle_rss, idle_pss = tree_kib(worker.pid)
        peak_rss, peak_pss, most = idle_rss, idle_pss, 1
        load = os.getloadavg()[0]
        started = time.perf_counter()
        services.start_fulfilment(rights_request=RightsRequest.objects.get(pk=request_id), actor=approver)
        interval = (sample_ms or 50) / 1000
        state_every = max(1, round(0.2 / interval)) if sample_ms else 1
        for sample in itertools.count():  # memory every sample_ms; the database every 200 ms
            if sample_ms:
                rss, pss = tree_kib(worker.pid)
                peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
                most = max(most, len(tree(worker.pid)))
            if worker.poll() is not None:
                raise RuntimeError("the worker died")
            state = RightsRequest.objects.values_list("state", flat=True)
            if sample % state_every == state_every - 1 and state.get(pk=request_id) == "completed":
                break
            time.sleep(interval)
        seconds = time.perf_counter() - started
        hwm = proc_kib(worker.pid, "VmHWM")
        size = DataExport.objects.get(request_id=request_id).size
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    values = (seconds, idle_rss, peak_rss, idle_pss, peak_pss, hwm, most, size / 1024, load)
    print(*(value / 1024 if index in (1, 2, 3, 4, 5, 7) else value for index, value in enumerate(values)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument(
        "--sample-ms", type=int, default=20, help="memory sampling interval; 0: time only, no memory samples"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.sample_ms)
        return
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL server (the benchmark makes its own scratch database).")
    print(f"Python {platform.python_version()}, {os.cpu_count()} cores, {platform.platform()}")
    print(
        "| records | time (s) | records/s | processes | tree RSS idle → peak (+) | tree PSS idle → peak (+) "
        "| worker VmHWM | ZIP | load |"
    )
    print("|---:|---:|---:|---:|---|---|---:|---:|---:|")
    for records in args.records:
        with tempfile.TemporaryDirectory() as export_dir:
            measured = run_one(base_url, records, Path(export_dir), args.sample_ms)
        seconds, rss0, rss1, pss0, pss1, hwm, most, size, load = measured
        if not args.sample_ms:
            rate = (records + 1) / seconds
            print(f"| {records:,} | {seconds:.1f} | {rate:,.0f} | | | | | {size:.1f} MiB | {load:.2f} |")
            continue
        print(
            f"| {records:,} | {seconds:.1f} | {(records + 1) / seconds:,.0f} | {most:.0f} "
            f"| {rss0:.0f} → {rss1:.0f} MiB (+{rss1 - rss0:.0f}) "
            f"| {pss0:.0f} → {pss1:.0f} MiB (+{pss1 - pss0:.0f}) "
            f"| {hwm:.0f} MiB | {size:.1f} MiB | {load:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
