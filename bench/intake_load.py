"""Load bench of the rights-request intake: form submissions and the status page, against gunicorn.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/intake_load.py

Creates its own PostgreSQL database next to the one DATABASE_URL names (and drops it at the end), starts
gunicorn on a free loopback port with a Redis cache (CACHE_URL, default redis://127.0.0.1:6379/3) so both
workers share rate-limit counters, then:

1. 200 form submissions (each a GET for the CSRF token and a POST) from 20 concurrent clients, with the
   per-IP submission limit set to 150/hour: checks that every 302 is exactly one stored request, every
   refusal is a 429 with the "Too many attempts" page, and nothing answered 5xx;
2. status-page GETs from 20 concurrent clients for a fixed count: requests per second and p95 latency.

Talks only to 127.0.0.1, every HTTP call has a timeout, and the whole run is bounded in count.
"""

import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (  # noqa: E402 (after the path set-up, when run as a script)
    PYTHON,
    ROOT,
    free_port,
    gunicorn,
    manage,
    production_env,
    submit,
    throwaway_postgres,
    timed_get,
)

SUBMISSIONS, CLIENTS, STATUS_GETS = 200, 20, 2000
SUBMIT_LIMIT = "150/3600"


def bench_env(database_url, port):
    return production_env(
        database_url=database_url,
        port=port,
        cache_url=os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/3"),
        DSR_RATE_SUBMIT_PER_IP=SUBMIT_LIMIT,
        DSR_RATE_SUBMIT_PER_EMAIL="5/3600",
        DSR_RATE_STATUS_PER_IP="1000000/60",
    )


def make_status_tokens(env, count):
    """Give ``count`` stored requests a status token (as confirmation would) and return the tokens."""
    script = (
        "from dsr_requests import tokens\n"
        "from dsr_requests.models import RightsRequest\n"
        f"for r in RightsRequest.objects.all()[:{count}]:\n"
        "    t, r.status_token_hash = tokens.new_status_token()\n"
        "    r.state = 'verifying'\n"
        "    r.save(update_fields=['status_token_hash', 'state'])\n"
        "    print(t)\n"
    )
    out = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return [word for word in out.stdout.split() if re.fullmatch(r"[0-9a-f]{64}", word)]


def count_requests(env):
    out = subprocess.run(
        [
            PYTHON,
            "manage.py",
            "shell",
            "-c",
            "from dsr_requests.models import RightsRequest as R; print(R.objects.count())",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.split()[-1])


def main():
    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    with throwaway_postgres(server, "artemis_intake_bench") as database_url:
        port = free_port()
        env = bench_env(database_url, port)
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")
        subprocess.run(["redis-cli", "-n", "3", "flushdb"], check=False, stdout=subprocess.DEVNULL)
        with gunicorn(env, port):
            return run(env, f"http://127.0.0.1:{port}")


def run(env, base):
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(
            pool.map(
                lambda n: submit(base, f"bench{n}@example.org", name=f"Bench Person {n}"), range(SUBMISSIONS)
            )
        )
    submit_seconds = time.perf_counter() - started
    codes = [status for status, _body, _headers in results]
    accepted, limited = codes.count(302), codes.count(429)
    server_errors = sum(1 for status in codes if status >= 500)
    clear_429 = all("Too many attempts" in body for status, body, _headers in results if status == 429)
    stored = count_requests(env)

    status_tokens = make_status_tokens(env, 50)
    urls = [f"{base}/requests/status/{status_tokens[i % len(status_tokens)]}/" for i in range(STATUS_GETS)]
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        timings = list(pool.map(timed_get, urls))
    status_seconds = time.perf_counter() - started
    latencies = sorted(seconds for _status, seconds in timings)
    status_ok = sum(1 for status, _seconds in timings if status == 200)

    print(
        f"submissions: {SUBMISSIONS} from {CLIENTS} clients in {submit_seconds:.1f}s; "
        f"accepted {accepted}, rate-limited {limited} (all with the 429 page: {clear_429}), "
        f"5xx {server_errors}, other {SUBMISSIONS - accepted - limited - server_errors}; stored {stored}"
    )
    print(
        f"status page: {STATUS_GETS} GETs from {CLIENTS} clients, {status_ok} OK, "
        f"{STATUS_GETS / status_seconds:.0f} req/s, median {statistics.median(latencies) * 1000:.0f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95) - 1] * 1000:.0f} ms"
    )
    ok = stored == accepted and server_errors == 0 and clear_429 and accepted + limited == SUBMISSIONS
    ok = ok and status_ok == STATUS_GETS
    print("result:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
