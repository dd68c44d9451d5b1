"""Scale bench of personal data reporting: one full report of many account IDs over many sites.

    createdb -h 127.0.0.1 -U postgres artemis_bench_pdr
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artemis_bench_pdr DEBUG=1 \\
        python bench/personal_data_report.py [--accounts 50000] [--sites 200] [--runs 3]

Fills the database (once; a second run reuses the rows) with sites whose base URL is a stand-in reporting
API on 127.0.0.1 and with rights requests bound to distinct account IDs, then runs ``report(force=True)``
``--runs`` times, printing wall time, SQL queries, HTTP calls and (in one extra run under tracemalloc) the
peak Python memory. The stand-in answers 204 with ``Cycle-Period: 168`` at once, so the figures are the
portal's own cost plus loopback HTTP. Talks only to 127.0.0.1, bounded in size and runs, stops by itself.
Results go to docs/benchmarks.md ("Personal data reporting").
"""

import argparse
import os
import statistics
import sys
import threading
import time
import tracemalloc
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artemis_portal.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # no log line per batch

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from dsr_requests import tokens  # noqa: E402
from dsr_requests.models import RightsRequest  # noqa: E402
from registrations import personal_data  # noqa: E402
from registrations.models import Registration  # noqa: E402

PREFIX = "PDR-"
CALLS = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        CALLS.append(1)
        self.send_response(204)
        self.send_header("Cycle-Period", "168")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def fill(accounts, sites, port):
    """Insert ``sites`` tenants and ``accounts`` bound requests, unless exactly those are there already."""
    base = f"http://127.0.0.1:{port}"
    tenants = Registration.objects.filter(client_key__startswith=PREFIX)
    bench_rows = RightsRequest.objects.filter(reference__startswith=PREFIX)
    if tenants.count() == sites and bench_rows.count() == accounts:
        for tenant in tenants:  # the stand-in's port changes from run to run
            Registration.objects.filter(pk=tenant.pk).update(base_url=f"{base}/{tenant.client_key}/wiki")
        print(f"reusing {sites} sites and {accounts} bound requests")
        return
    bench_rows.delete()
    tenants.delete()
    now, started = timezone.now(), time.monotonic()
    keys = [f"{PREFIX}{n:05d}" for n in range(sites)]
    Registration.objects.bulk_create(
        Registration(
            client_key=key,
            shared_secret=uuid.uuid4().hex * 2,
            base_url=f"{base}/{key}/wiki",
            product_type="confluence",
            state=Registration.State.ENABLED,
            installed_at=now,
            updated_at=now,
        )
        for key in keys
    )
    batch = []
    for i in range(accounts):
        batch.append(
            RightsRequest(
                reference=f"{PREFIX}{i:07d}",
                request_type="review",
                state="in_review",
                email=f"person{i}@example.org",
                email_hash=tokens.email_blind_index(f"person{i}@example.org"),
                received_at=now,
                account_id=f"557058:{uuid.UUID(int=i)}",
                site_client_key=keys[i % sites],
            )
        )
        if len(batch) == 5000:
            RightsRequest.objects.bulk_create(batch)
            batch = []
    RightsRequest.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"inserted {sites} sites and {accounts} bound requests in {time.monotonic() - started:.0f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("This bench needs PostgreSQL: set DATABASE_URL=postgres://...")
    if not 1 <= args.accounts <= 500_000 or not 1 <= args.sites <= 10_000 or not 1 <= args.runs <= 10:
        sys.exit("--accounts 1..500000, --sites 1..10000, --runs 1..10")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        call_command("migrate", verbosity=0)
        fill(args.accounts, args.sites, server.server_address[1])
        times = []
        for _ in range(args.runs):
            CALLS.clear()
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                run = personal_data.report(force=True)
                times.append(time.perf_counter() - started)
            assert run.failed_batches == 0, [b.error for b in run.batches if not b.ok][:3]
            calls = len(CALLS)
        tracemalloc.start()
        personal_data.report(force=True)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        server.shutdown()
        server.server_close()
    print(
        f"\n{run.accounts} accounts, {args.sites} sites, {run.total_batches} batches; per run: "
        f"{calls} HTTP calls, {len(queries)} SQL queries"
    )
    print(f"report: median {statistics.median(times):.2f} s, max {max(times):.2f} s over {args.runs} runs")
    print(f"peak Python memory during one report (tracemalloc): {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
