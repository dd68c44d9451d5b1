"""Scale bench of the staff side of rights requests: dashboard, list, change page and search, at sizes.

Two modes, PostgreSQL only, each bounded in size and runs and stopping by itself; results go to
docs/benchmarks.md ("Rights requests: staff").

Side by side (the one to compare sizes with): two databases already filled by ``manage.py
dsr_seed_bench`` to different sizes, measured in alternating rounds, so that the load of a shared machine
falls on both alike::

    python bench/dsr_staff.py --databases postgres://postgres@127.0.0.1:5432/artemis_bench100k \
        postgres://postgres@127.0.0.1:5432/artemis_bench1m [--rounds 6] [--runs 5] [--explain]

First, per database, one process migrates it, gives the bench person their requests
(``bench_data.give_person_their_requests``, for databases seeded before that person existed) and runs
VACUUM ANALYZE (index-only scans need a fresh table's visibility map). Then ``--rounds`` rounds; in each,
one new process per database (the first database first in even rounds, last in odd ones) renders every
page twice to warm up and ``--runs`` times timed. The table gives, per page, the number of queries, the
median and 95th percentile over all rounds' timed renders, per database, and the ratio of the medians
(second / first). ``--explain`` prints, per database, ``EXPLAIN ANALYZE`` of each list page's queries
on the requests table (each filter in both orders), once, before the rounds.

Grown in place (one database, one process, smallest size first; it tops the database up with
``dsr_seed_bench`` and runs VACUUM ANALYZE before measuring each size)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artemis_bench1m \
        python bench/dsr_staff.py --sizes 100000 1000000 [--events-per-request 10] [--runs 15]

Pages are rendered through Django's test client, in process, with DEBUG off, as in production (DEBUG
keeps every query and renders templates in debug mode), with the keys of the checkout's ``.env``
(``python3 dev.py setup`` writes one), so that the rows filled by one run decrypt in the next.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artemis_portal.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # no access line per measured request
# Production-like: DEBUG off; no TLS in process, so neither the HTTPS redirect nor HSTS.
for name, value in {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "127.0.0.1",
    "APP_BASE_URL": "https://127.0.0.1",
    "SECURE_SSL_REDIRECT": "0",
    "SECURE_HSTS_SECONDS": "0",
}.items():
    os.environ.setdefault(name, value)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

# No collectstatic for an in-process bench: plain static URLs instead of the manifest's hashed names
# (a dictionary lookup per {% static %} in production, the same cost).
settings.STORAGES = {
    **settings.STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from dsr_requests import bench_data, roles  # noqa: E402
from dsr_requests.models import RequestEvent, RequestState, RightsRequest  # noqa: E402
from security.testing import SecondFactorClient  # noqa: E402

S = RequestState


def fill(count, events_per_request):
    """Top the bench rows up to ``count`` requests (``manage.py dsr_seed_bench``), then VACUUM ANALYZE
    (index-only scans need the visibility map of a freshly loaded table)."""
    started = time.monotonic()
    call_command("dsr_seed_bench", requests=count, events_per_request=events_per_request, bench_database=True)
    print(f"seeded up to {count} requests in {time.monotonic() - started:.0f} s", flush=True)
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"VACUUM ANALYZE in {time.monotonic() - started:.0f} s", flush=True)


def render_times(client, url, params, runs):
    """Render ``url`` twice to warm up, then ``runs`` times; returns (queries of the last render, ms)."""
    for _ in range(2):
        assert client.get(url, params, HTTP_HOST="127.0.0.1").status_code == 200
    times = []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url, params, HTTP_HOST="127.0.0.1")
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return len(queries), times


def summary(times):
    """(median, 95th percentile) of a list of milliseconds."""
    times = sorted(times)
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * len(times)) - 1)]


def pages():
    """``(label, url, params)`` of every page measured: the dashboard, the list (default order and each
    filter, and newest first), a change page and the searches."""
    changelist = reverse("admin:dsr_requests_rightsrequest_changelist")
    sample = RightsRequest.objects.filter(reference__startswith=bench_data.PREFIX).order_by("pk").first()
    return [
        ("dashboard", reverse("admin:dsr_requests_rightsrequest_dashboard"), {}),
        ("list, default order (most urgent first)", changelist, {}),
        ("list, newest first", changelist, {"order": "newest"}),
        ("list, state = in review", changelist, {"state__exact": "in_review"}),
        ("list, state = completed", changelist, {"state__exact": "completed"}),
        ("list, state = withdrawn", changelist, {"state__exact": "withdrawn"}),
        ("list, type = copy", changelist, {"request_type__exact": "copy"}),
        ("list, regime = CCPA", changelist, {"regime__exact": "ccpa"}),
        ("list, channel = web", changelist, {"channel__exact": "web"}),
        ("list, overdue", changelist, {"due": "overdue"}),
        ("list, overdue, newest first", changelist, {"due": "overdue", "order": "newest"}),
        ("list, due within 5 working days", changelist, {"due": "soon"}),
        ("list, assigned to me", changelist, {"assigned": "me"}),
        ("list, unassigned", changelist, {"assigned": "nobody"}),
        ("search, reference", changelist, {"q": sample.reference.lower()}),
        (
            f"search, email of a person ({len(bench_data.PERSON_NUMBERS)} requests)",
            changelist,
            {"q": bench_data.PERSON},
        ),
        ("search, email of the old needle (1 in 1,000 requests)", changelist, {"q": bench_data.NEEDLE}),
        (
            "change page (10 events)",
            reverse("admin:dsr_requests_rightsrequest_change", args=[sample.pk]),
            {},
        ),
    ]


def reviewer_client():
    """A test client logged in (two factors) as a reviewer."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user, _created = get_user_model().objects.get_or_create(
        username="bench-reviewer", defaults={"is_staff": True}
    )
    user.groups.add(Group.objects.get(name=roles.REVIEWER))
    # Staff two-factor is enforced: log in as after password and authenticator code.
    client = SecondFactorClient()
    client.force_login(user)
    return client


def explain(client):
    """``EXPLAIN ANALYZE`` of each list page's SELECTs on the requests table (after one warm-up render)."""
    table = RightsRequest._meta.db_table
    listed = [(label, url, params) for label, url, params in pages() if label.startswith(("list", "search"))]
    newest = [
        (f"{label}, newest first", url, {**params, "order": "newest"})
        for label, url, params in listed
        if label.startswith("list") and params and "order" not in params and params != {"due": "overdue"}
    ]
    for label, url, params in listed + newest:
        client.get(url, params, HTTP_HOST="127.0.0.1")
        with CaptureQueriesContext(connection) as queries:
            client.get(url, params, HTTP_HOST="127.0.0.1")
        print(f"\n=== {label}", flush=True)
        for query in queries.captured_queries:
            if not query["sql"].startswith("SELECT") or f'FROM "{table}"' not in query["sql"]:
                continue
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {query['sql']}")
                print("\n".join(row[0] for row in cursor.fetchall()), flush=True)


def size_line():
    return f"{RightsRequest.objects.count()} requests, {RequestEvent.objects.count()} events"


def worker(args):
    """One process on one database (``DATABASE_URL``): prepare it, or measure every page once."""
    if args.worker == "prepare":
        call_command("migrate", verbosity=0)
        bench_data.give_person_their_requests()
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        print(json.dumps({"size": size_line(), "vacuum_s": round(time.monotonic() - started)}))
        if args.explain:
            explain(reviewer_client())
        return
    client = reviewer_client()
    results = {label: render_times(client, url, params, args.runs) for label, url, params in pages()}
    print(json.dumps(results))


def run_worker(url, mode, args):
    command = [sys.executable, __file__, "--worker", mode, "--runs", str(args.runs)]
    if args.explain:
        command.append("--explain")
    done = subprocess.run(  # noqa: S603 (our own script, our own arguments)
        command, env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"worker on {url} failed:\n{done.stderr}")
    return done.stdout


def side_by_side(args):
    """Alternate rounds between two databases; medians over all rounds."""
    names = [url.rsplit("/", 1)[-1] for url in args.databases]
    if names[0] == names[1]:
        names = [f"{names[0]} (1)", f"{names[1]} (2)"]
    for url, name in zip(args.databases, names, strict=True):
        out = run_worker(url, "prepare", args)
        first, _newline, rest = out.partition("\n")
        info = json.loads(first)
        print(f"{name}: {info['size']}; VACUUM ANALYZE {info['vacuum_s']} s", flush=True)
        if rest.strip():
            print(f"\n##### EXPLAIN on {name}{rest}", flush=True)
    times = {name: {} for name in names}
    queries = {name: {} for name in names}
    for number in range(args.rounds):
        order = list(zip(args.databases, names, strict=True))
        for url, name in order if number % 2 == 0 else reversed(order):
            load = Path("/proc/loadavg").read_text().split()[0]
            results = json.loads(run_worker(url, "measure", args))
            for label, (count, samples) in results.items():
                times[name].setdefault(label, []).extend(samples)
                queries[name].setdefault(label, set()).add(count)
            print(f"round {number + 1}: {name} done (1-minute load {load} at its start)", flush=True)
    print(
        f"\n{args.rounds} rounds x {args.runs} timed renders per page and database, "
        f"DEBUG={settings.DEBUG}; medians and p95 in ms over all rounds\n"
    )
    print(f"| page | queries | {names[0]} median | p95 | {names[1]} median | p95 | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label in times[names[0]]:
        count = "/".join(sorted({str(c) for name in names for c in queries[name][label]}))
        (a, a95), (b, b95) = summary(times[names[0]][label]), summary(times[names[1]][label])
        print(f"| {label} | {count} | {a:.0f} | {a95:.0f} | {b:.0f} | {b95:.0f} | {b / a:.2f} |")


def grown(args):
    """One database grown through the sizes, smallest first."""
    call_command("migrate", verbosity=0)
    client = reviewer_client()
    results = {}
    for size in args.sizes:
        fill(size, args.events_per_request)
        print(f"measuring at {size_line()}", flush=True)
        results[size] = [
            (label, *render_times(client, url, params, args.runs)) for label, url, params in pages()
        ]
    sizes = args.sizes
    print(f"\n{args.runs} timed runs per page and size, DEBUG={settings.DEBUG}; medians in ms\n")
    head = " | ".join(f"{size:,} median | p95" for size in sizes)
    ratio = " | ratio" if len(sizes) > 1 else ""
    print(f"| page | queries | {head}{ratio} |")
    print("|---|---:|" + "---:|---:|" * len(sizes) + ("---:|" if len(sizes) > 1 else ""))
    for row in range(len(results[sizes[0]])):
        label = results[sizes[0]][row][0]
        queries = "/".join(sorted({str(results[size][row][1]) for size in sizes}))
        medians = {size: summary(results[size][row][2]) for size in sizes}
        cells = " | ".join(f"{medians[size][0]:.0f} | {medians[size][1]:.0f}" for size in sizes)
        last = f" | {medians[sizes[-1]][0] / medians[sizes[0]][0]:.2f}" if len(sizes) > 1 else ""
        print(f"| {label} | {queries} | {cells}{last} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    mode.add_argument(
        "--databases", nargs=2, metavar="URL", help="two filled databases, compared side by side"
    )
    parser.add_argument("--events-per-request", type=int, default=10)
    parser.add_argument(
        "--runs", type=int, default=15, help="timed renders per page (per round with --databases)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (--databases)")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the list pages (--databases)")
    parser.add_argument("--worker", choices=["prepare", "measure"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if connection.vendor != "postgresql" and not args.databases:
        sys.exit("This bench needs PostgreSQL: set DATABASE_URL=postgres://... (or pass --databases)")
    if (
        not all(1 <= size <= 1_000_000 for size in args.sizes)
        or args.sizes != sorted(args.sizes)
        or not 1 <= args.events_per_request <= 50
        or not 1 <= args.runs <= 100
        or not 1 <= args.rounds <= 20
    ):
        sys.exit(
            "--sizes ascending, each 1..1000000; --events-per-request 1..50; --runs 1..100; --rounds 1..20"
        )
    if args.worker:
        worker(args)
    elif args.databases:
        side_by_side(args)
    else:
        grown(args)


if __name__ == "__main__":
    main()
