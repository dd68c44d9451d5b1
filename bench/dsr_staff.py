"""Scale bench of the staff side of rights requests: dashboard, list, change page and search, at sizes.

    createdb -h 127.0.0.1 -U postgres artemis_bench1m
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artemis_bench1m \\
        python bench/dsr_staff.py --sizes 100000 1000000 [--events-per-request 10] [--runs 15]
    dropdb -h 127.0.0.1 -U postgres artemis_bench1m

For each size, smallest first, tops the database up to that many synthetic requests with their events
(``manage.py dsr_seed_bench``: spread over two years, about 92 % closed; a later run reuses the rows),
runs VACUUM ANALYZE, then renders through Django's test client, in process, the dashboard, the list in
its default order and with each filter, both searches and a change page, printing the number of queries
and the median and 95th-percentile time of each, per size, and the ratio of the medians of the last size
to the first. PostgreSQL only; bounded in size and runs, and it stops by itself. Results go to
docs/benchmarks.md ("Rights requests: staff").

It runs with DEBUG off, as in production (DEBUG keeps every query and renders templates in debug mode),
with the keys of the checkout's ``.env`` (``python3 dev.py setup`` writes one), so that the rows filled by
one run still decrypt in the next.
"""

import argparse
import os
import statistics
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


def measure(client, label, url, params, runs):
    """Render ``url`` ``runs`` times after two warm-ups; returns one result row."""
    for _ in range(2):
        assert client.get(url, params, HTTP_HOST="127.0.0.1").status_code == 200
    times = []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url, params, HTTP_HOST="127.0.0.1")
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
    return label, len(queries), statistics.median(times), p95


def pages(reviewer):
    """``(label, url, params)`` of every page measured: the dashboard, the list (default order and each
    filter), a change page and the searches."""
    changelist = reverse("admin:dsr_requests_rightsrequest_changelist")
    sample = RightsRequest.objects.filter(reference__startswith=bench_data.PREFIX).order_by("pk").first()
    return [
        ("dashboard", reverse("admin:dsr_requests_rightsrequest_dashboard"), {}),
        ("list, default order", changelist, {}),
        ("list, state = in review", changelist, {"state__exact": "in_review"}),
        ("list, state = completed", changelist, {"state__exact": "completed"}),
        ("list, type = copy", changelist, {"request_type__exact": "copy"}),
        ("list, regime = CCPA", changelist, {"regime__exact": "ccpa"}),
        ("list, channel = web", changelist, {"channel__exact": "web"}),
        ("list, overdue", changelist, {"due": "overdue"}),
        ("list, due this week", changelist, {"due": "week"}),
        ("list, assigned to me", changelist, {"assigned": "me"}),
        ("list, unassigned", changelist, {"assigned": "nobody"}),
        ("search, reference", changelist, {"q": sample.reference.lower()}),
        ("search, email (blind index)", changelist, {"q": bench_data.NEEDLE}),
        (
            "change page (10 events)",
            reverse("admin:dsr_requests_rightsrequest_change", args=[sample.pk]),
            {},
        ),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--events-per-request", type=int, default=10)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("This bench needs PostgreSQL: set DATABASE_URL=postgres://...")
    if (
        not all(1 <= size <= 1_000_000 for size in args.sizes)
        or args.sizes != sorted(args.sizes)
        or not 1 <= args.events_per_request <= 50
        or not 1 <= args.runs <= 100
    ):
        sys.exit("--sizes ascending, each 1..1000000; --events-per-request 1..50; --runs 1..100")
    call_command("migrate", verbosity=0)

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user, _created = get_user_model().objects.get_or_create(
        username="bench-reviewer", defaults={"is_staff": True}
    )
    user.groups.add(Group.objects.get(name=roles.REVIEWER))
    # Staff two-factor is enforced: log in as after password and authenticator code.
    client = SecondFactorClient()
    client.force_login(user)
    results = {}
    for size in args.sizes:
        fill(size, args.events_per_request)
        total, events = RightsRequest.objects.count(), RequestEvent.objects.count()
        print(f"measuring at {total} requests, {events} events", flush=True)
        results[size] = [measure(client, label, url, params, args.runs) for label, url, params in pages(user)]
    sizes = args.sizes
    print(f"\n{args.runs} timed runs per page and size, DEBUG={settings.DEBUG}; medians in ms\n")
    head = " | ".join(f"{size:,} median | p95" for size in sizes)
    ratio = " | ratio" if len(sizes) > 1 else ""
    print(f"| page | queries | {head}{ratio} |")
    print("|---|---:|" + "---:|---:|" * len(sizes) + ("---:|" if len(sizes) > 1 else ""))
    for row in range(len(results[sizes[0]])):
        label = results[sizes[0]][row][0]
        queries = "/".join(sorted({str(results[size][row][1]) for size in sizes}))
        cells = " | ".join(f"{results[size][row][2]:.0f} | {results[size][row][3]:.0f}" for size in sizes)
        last = ""
        if len(sizes) > 1:
            last = f" | {results[sizes[-1]][row][2] / results[sizes[0]][row][2]:.2f}"
        print(f"| {label} | {queries} | {cells}{last} |")


if __name__ == "__main__":
    main()
