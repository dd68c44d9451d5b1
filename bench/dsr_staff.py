"""Scale bench of the staff side of rights requests: admin changelist and dashboard on a large table.

    createdb -h 127.0.0.1 -U postgres artemis_bench_staff
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artemis_bench_staff \\
        python bench/dsr_staff.py [--requests 100000] [--events-per-request 10] [--runs 15]

Fills the database (once; a second run reuses the rows) with synthetic requests spread over two years,
most of them closed, and their events, then renders through Django's test client, in process, the
changelist (default, overdue filter, email search), a change page and the dashboard, printing the number of
queries and the median and 95th-percentile time of each. PostgreSQL only; bounded in size and runs, and
it stops by itself. Results go to docs/benchmarks.md ("Rights requests: staff").

It runs with DEBUG off, as in production (DEBUG keeps every query and renders templates in debug mode),
with the keys of the checkout's ``.env`` (``python3 dev.py setup`` writes one), so that the rows filled by
one run still decrypt in the next.
"""

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
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
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from dsr_requests import roles, services, tokens  # noqa: E402
from dsr_requests.models import RequestEvent, RequestState, RequestType, RightsRequest  # noqa: E402
from security.testing import SecondFactorClient  # noqa: E402

S = RequestState
PREFIX = "BEN-"
NEEDLE = "bench-needle@example.org"
OPEN = [S.VERIFYING, S.IN_REVIEW, S.IN_REVIEW, S.APPROVED, S.FULFILLING, S.ON_HOLD]
CLOSED = [S.COMPLETED] * 16 + [S.REJECTED] * 2 + [S.WITHDRAWN, S.CLOSED_UNVERIFIED]


def _request(i, now, rng):
    received_at = now - timedelta(days=rng.uniform(0, 730))
    age = (now - received_at).days
    state = rng.choice(OPEN if age < 60 else CLOSED)
    email = NEEDLE if i % 1000 == 0 else f"person{i}@example.org"
    r = RightsRequest(
        reference=f"{PREFIX}{i:07d}",
        request_type=rng.choice(RequestType.values),
        state=state,
        held_from_state=S.IN_REVIEW if state == S.ON_HOLD else "",
        held_since=now if state == S.ON_HOLD else None,
        name=f"Person {i}",
        email=email,
        email_hash=tokens.email_blind_index(email),
        details="Bench request.",
        received_at=received_at,
        regime=rng.choice(["uk_gdpr", "uk_gdpr", "gdpr", "ccpa"]),
        rejection_reason="Identity not proven." if state == S.REJECTED else "",
        rejection_ground="identity_not_proven" if state == S.REJECTED else "",
    )
    if state in services.FINAL_STATES:
        r.closed_at = received_at + timedelta(days=rng.uniform(1, 45))
    services.apply_due_dates(r)
    return r


def fill(count, events_per_request):
    """Insert ``count`` bench requests and their events, unless exactly that many are there already."""
    bench_rows = RightsRequest.objects.filter(reference__startswith=PREFIX)
    have = bench_rows.count()
    have_events = RequestEvent.objects.filter(request__reference__startswith=PREFIX).count()
    if (have, have_events) == (count, count * events_per_request):
        print(f"reusing {have} bench requests and {have_events} events")
        return
    RightsRequest.objects.filter(reference__startswith=PREFIX).delete()
    rng, now, started = random.Random(5), timezone.now(), time.monotonic()
    batch = []
    for i in range(count):
        batch.append(_request(i, now, rng))
        if len(batch) == 5000:
            RightsRequest.objects.bulk_create(batch)
            batch = []
    RightsRequest.objects.bulk_create(batch)
    print(f"inserted {count} requests in {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO dsr_requests_requestevent
                (request_id, from_state, to_state, actor_id, actor_kind, note, public, created_at)
            SELECT r.id, 'in_review', 'in_review', NULL, 'system', 'Bench event', g %% 2 = 0,
                   r.received_at + make_interval(hours => g)
            FROM dsr_requests_rightsrequest r CROSS JOIN generate_series(1, %s) AS g
            WHERE r.reference LIKE %s
            """,
            [events_per_request, PREFIX + "%"],
        )
        cursor.execute("ANALYZE")
    print(f"inserted {count * events_per_request} events in {time.monotonic() - started:.0f} s")


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--events-per-request", type=int, default=10)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("This bench needs PostgreSQL: set DATABASE_URL=postgres://...")
    if (
        not 1 <= args.requests <= 1_000_000
        or not 1 <= args.events_per_request <= 50
        or not 1 <= args.runs <= 100
    ):
        sys.exit("--requests 1..1000000, --events-per-request 1..50, --runs 1..100")
    call_command("migrate", verbosity=0)
    fill(args.requests, args.events_per_request)

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user, _created = get_user_model().objects.get_or_create(
        username="bench-reviewer", defaults={"is_staff": True}
    )
    user.groups.add(Group.objects.get(name=roles.REVIEWER))
    # Staff two-factor is enforced: log in as after password and authenticator code.
    client = SecondFactorClient()
    client.force_login(user)
    changelist = reverse("admin:dsr_requests_rightsrequest_changelist")
    sample = RightsRequest.objects.filter(reference__startswith=PREFIX).order_by("pk").first()
    results = [
        measure(client, "changelist, default", changelist, {}, args.runs),
        measure(client, "changelist, overdue filter", changelist, {"due": "overdue"}, args.runs),
        measure(client, "changelist, email search", changelist, {"q": NEEDLE}, args.runs),
        measure(
            client,
            "change page (10 events)",
            reverse("admin:dsr_requests_rightsrequest_change", args=[sample.pk]),
            {},
            args.runs,
        ),
        measure(client, "dashboard", reverse("admin:dsr_requests_rightsrequest_dashboard"), {}, args.runs),
    ]
    total = RightsRequest.objects.count()
    events = RequestEvent.objects.count()
    print(f"\n{total} requests, {events} events, {args.runs} timed runs each, DEBUG={settings.DEBUG}\n")
    print("| page | queries | median ms | p95 ms |")
    print("|---|---:|---:|---:|")
    for label, queries, median, p95 in results:
        print(f"| {label} | {queries} | {median:.0f} | {p95:.0f} |")


if __name__ == "__main__":
    main()
