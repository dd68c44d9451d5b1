#!/usr/bin/env python3
"""Requests per second of the JWT-protected Connect page vs the same page unprotected, under gunicorn.

    /path/to/venv/bin/python bench/connect_gunicorn.py [--database-url postgres://...] [--cache-url redis://...]
        [--duration 4] [--rounds 9] [--connections 8] [--workers 2]

Needs ``wrk`` (Debian: ``apt-get install wrk``). Starts gunicorn on 127.0.0.1 with production settings
(DEBUG off, persistent database connections), creates one enabled tenant and drives four pages with
wrk, in short rounds that rotate which page goes first, so load from other processes hits all alike:

- JWT-protected: the identity-proof page (token parse, HS256 check, tenant from the cache, qsh
  ``context-qsh``, usage count, framing header, the page);
- unprotected: its twin with the same usage count and page but no authentication;
- bare: the page's template rendered in full, no usage count;
- trivial: a view that returns a constant, through the same middleware (the floor).

Everything talks to loopback only, every wrk run is bounded by ``--duration`` and gunicorn is stopped at
the end. Default database: a throw-away SQLite file (pass ``--database-url`` for PostgreSQL).
"""

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._support import free_port, gunicorn, production_env  # noqa: E402 (after the path set-up)


def run_wrk(url, *, duration, connections, token=None):
    """One bounded wrk run; returns requests/s and refuses results containing errors or non-2xx."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s"]
    if token:
        command += ["-H", f"Authorization: JWT {token}"]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=duration + 30
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit(f"wrk saw errors on {url}:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--cache-url", default="locmemcache://bench")
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed; on Debian/Ubuntu: apt-get install wrk")

    tmp = tempfile.mkdtemp(prefix="connect-gunicorn-")
    port = free_port()
    env = production_env(
        database_url=args.database_url or f"sqlite:///{tmp}/bench.sqlite3",
        port=port,
        cache_url=args.cache_url,
        app_base_url="https://privacy.example.test",
        DJANGO_SETTINGS_MODULE="bench.connect_settings",
        PYTHONPATH=str(ROOT),
    )
    os.environ.update(env)
    import django

    django.setup()
    import jwt as pyjwt
    from django.core.management import call_command
    from django.utils import timezone

    from bench.connect_urls import ACCOUNT_ID, SITE_URL
    from registrations.models import Registration

    call_command("migrate", verbosity=0)
    secret = secrets.token_urlsafe(32)
    client_key = "bench-" + secrets.token_hex(8)
    Registration.objects.create(
        client_key=client_key,
        shared_secret=secret,
        base_url=SITE_URL,
        product_type="confluence",
        state=Registration.State.ENABLED,
        installed_at=timezone.now(),
        updated_at=timezone.now(),
    )
    now = int(time.time())
    token = pyjwt.encode(
        {"iss": client_key, "sub": ACCOUNT_ID, "iat": now, "exp": now + 3600, "qsh": "context-qsh"},
        secret,
        algorithm="HS256",
    )

    base = f"http://127.0.0.1:{port}"
    pages = {
        "trivial": (f"{base}/bench/trivial/", None),
        "bare": (f"{base}/bench/bare/", None),
        "unprotected": (f"{base}/bench/unprotected/", None),
        "JWT-protected": (f"{base}/connect/identity-proof/", token),
    }
    results = {name: [] for name in pages}
    load_before = f"{os.getloadavg()[0]:.2f}"
    with gunicorn(env, port, workers=args.workers, log_path=Path(tmp) / "gunicorn.log", config=False):
        request = urllib.request.Request(pages["JWT-protected"][0], headers={"Authorization": f"JWT {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read().decode()
        assert SITE_URL in body, "protected page did not render"
        for url, page_token in pages.values():  # warm-up: imports, connections, tenant cache in each worker
            run_wrk(url, duration=2, connections=args.connections, token=page_token)
        names = list(pages)
        for round_number in range(args.rounds):
            # Each round starts with a different page, so a load change from outside favours none.
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                url, page_token = pages[name]
                results[name].append(
                    run_wrk(url, duration=args.duration, connections=args.connections, token=page_token)
                )

    database = "PostgreSQL" if env["DATABASE_URL"].startswith("postgres") else "SQLite"
    print(
        f"gunicorn {args.workers} sync workers, wrk -t1 -c{args.connections}, {args.rounds} rounds x "
        f"{args.duration}s per page, {database}, cache {args.cache_url.split(':')[0]}"
    )
    print(f"1-min load average before / after: {load_before} / {os.getloadavg()[0]:.2f} (2 cores, shared)")
    means = {}
    for name, values in results.items():
        means[name] = sum(values) / len(values)
        rounds = " ".join(f"{value:7.1f}" for value in values)
        print(
            f"{name:14s} req/s per round: {rounds}   mean {means[name]:7.1f} "
            f"median {statistics.median(values):7.1f}"
        )
    for other in ("unprotected", "bare", "trivial"):
        # Pages measured seconds apart share the background load, so per-round ratios are steadier.
        ratios = sorted(p / o for p, o in zip(results["JWT-protected"], results[other], strict=True))
        median = statistics.median(ratios)
        print(
            f"JWT-protected / {other:12s} ratio of means {means['JWT-protected'] / means[other]:.1%}, "
            f"median of per-round ratios {median:.1%}"
        )


if __name__ == "__main__":
    main()
