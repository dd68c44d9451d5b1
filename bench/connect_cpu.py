#!/usr/bin/env python3
"""CPU time per request of the Connect page vs a trivial view, through Django's WSGI handler in-process.

    /path/to/venv/bin/python bench/connect_cpu.py [--database-url postgres://...]
        [--cache-url redis://127.0.0.1:6379/7] [--requests 3000] [--runs 5]

The gunicorn bench (bench/connect_gunicorn.py) measures requests per second, which on a machine shared
with other jobs mostly measures the other jobs: a page that waits for Redis gives its core away and
queues behind them to get it back. This one counts what a request costs in CPU, which the machine's load
does not change: the thread's CPU time (``time.thread_time``, user + system, so the socket calls to
Redis count) for each request, plus Redis's own CPU (``INFO cpu``) shared out over the requests that
used it. The same pages as the gunicorn bench (production settings, the real middleware, a warm tenant
cache), interleaved request by request; the figure is the median of ``--runs`` runs.
"""

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._support import production_env  # noqa: E402 (after the path set-up)


def redis_cpu(client):
    info = client.info("cpu")
    return info["used_cpu_sys"] + info["used_cpu_user"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--cache-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--requests", type=int, default=3000, help="per page and run")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="connect-cpu-")
    os.environ.update(
        production_env(
            database_url=args.database_url or f"sqlite:///{tmp}/bench.sqlite3",
            port=8000,
            cache_url=args.cache_url,
            app_base_url="https://privacy.example.test",
            DJANGO_SETTINGS_MODULE="bench.connect_settings",
            ALLOWED_HOSTS="127.0.0.1",
        )
    )
    import django

    django.setup()
    import jwt as pyjwt
    import redis
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.test.client import RequestFactory
    from django.utils import timezone

    from bench.connect_urls import ACCOUNT_ID, SITE_URL
    from registrations.models import Registration

    call_command("migrate", verbosity=0)
    secret, client_key = secrets.token_urlsafe(32), "bench-cpu-" + secrets.token_hex(8)
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
    # A well-formed token naming a client key that does not exist (issue 19 item 2): after the first
    # request the key is remembered as missing, as under a flood of forged issuers.
    forged = pyjwt.encode(
        {
            "iss": "forged-" + secrets.token_hex(8),
            "sub": ACCOUNT_ID,
            "iat": now,
            "exp": now + 3600,
            "qsh": "context-qsh",
        },
        secrets.token_urlsafe(32),
        algorithm="HS256",
    )
    handler = WSGIHandler()
    factory = RequestFactory()
    pages = {
        "trivial": ("/bench/trivial/", None),
        "bare": ("/bench/bare/", None),
        "JWT-protected": ("/connect/identity-proof/", token),
        "forged issuer": ("/connect/identity-proof/", forged),
    }

    def environ(path, page_token):
        extra = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_HOST": "127.0.0.1", "SERVER_NAME": "127.0.0.1"}
        if page_token:
            extra["HTTP_AUTHORIZATION"] = f"JWT {page_token}"
        return factory._base_environ(PATH_INFO=path, REQUEST_METHOD="GET", **extra)

    def call(path, page_token):
        response = handler(environ(path, page_token), lambda status, headers, exc_info=None: None)
        body = b"".join(response)
        response.close()
        return body

    assert SITE_URL.encode() in call(*pages["JWT-protected"]), "protected page did not render"
    for path, page_token in pages.values():  # warm-up
        for _ in range(200):
            call(path, page_token)
    redis_client = redis.Redis.from_url(args.cache_url) if args.cache_url.startswith("redis") else None
    runs = {name: [] for name in pages}
    for _run in range(args.runs):
        spent = dict.fromkeys(pages, 0.0)
        redis_spent = dict.fromkeys(pages, 0.0)
        # One page at a time within a run (so Redis's CPU can be told apart), pages interleaved in blocks.
        for _block in range(10):
            for name, (path, page_token) in pages.items():
                before_redis = redis_cpu(redis_client) if redis_client else 0.0
                started = time.thread_time()
                for _ in range(args.requests // 10):
                    call(path, page_token)
                spent[name] += time.thread_time() - started
                if redis_client:
                    # Includes Redis answering these two INFO calls: well under 1 µs per request.
                    redis_spent[name] += redis_cpu(redis_client) - before_redis
        for name in pages:
            runs[name].append((spent[name] + redis_spent[name]) / args.requests * 1e6)
    print(
        f"in-process WSGI handler, production settings, {args.runs} runs x {args.requests} requests "
        "per page, "
        f"{'PostgreSQL' if (args.database_url or '').startswith('postgres') else 'SQLite'}, "
        f"cache {args.cache_url.split(':')[0]}; CPU µs per request (this thread + Redis), median of runs"
    )
    print(f"1-min load average at the end: {os.getloadavg()[0]:.2f} (2 cores, shared)")
    medians = {name: statistics.median(values) for name, values in runs.items()}
    for name, values in runs.items():
        print(f"{name:14s} " + " ".join(f"{v:7.1f}" for v in values) + f"   median {medians[name]:7.1f}")
    for other in ("trivial", "bare"):
        print(
            f"requests/s a CPU-bound server would serve, JWT-protected / {other}: "
            f"{medians[other] / medians['JWT-protected']:.1%}"
        )


if __name__ == "__main__":
    main()
