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

import base64
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SUBMISSIONS, CLIENTS, STATUS_GETS = 200, 20, 2000
SUBMIT_LIMIT = "150/3600"
TIMEOUT = 15


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(database_url, port):
    return {
        **os.environ,
        "ENV_FILE": "",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FERNET_KEYS": secrets.token_urlsafe(32),
        "BACKUP_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "APP_BASE_URL": f"https://127.0.0.1:{port}",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_HSTS_SECONDS": "0",
        "DATABASE_URL": database_url,
        "CACHE_URL": os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/3"),
        "EMAIL_URL": "dummymail://",
        "TASKS_BACKEND": "immediate",
        "DSR_RATE_SUBMIT_PER_IP": SUBMIT_LIMIT,
        "DSR_RATE_SUBMIT_PER_EMAIL": "5/3600",
        "DSR_RATE_STATUS_PER_IP": "1000000/60",
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
    }


def manage(env, *args):
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def wait_for(url, deadline=30):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    raise SystemExit(f"gunicorn did not answer at {url}")


# Production settings mark cookies Secure; the bench speaks plain http on loopback and says it is https
# the way Heroku's router does (X-Forwarded-Proto), so it carries the CSRF cookie by hand.
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}


def submit(base, n):
    """One requester: load the form (CSRF cookie and token), post it; returns (status, body)."""
    opener = urllib.request.build_opener(NoRedirect)
    with opener.open(
        urllib.request.Request(base + "/requests/new/", headers=PROXY_HEADERS), timeout=TIMEOUT
    ) as r:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.read().decode()).group(1)
        cookie = r.headers["Set-Cookie"].split(";", 1)[0]
    data = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token,
            "request_type": "review",
            "name": f"Bench Person {n}",
            "email": f"bench{n}@example.org",
            "details": "load bench",
        }
    ).encode()
    headers = {
        **PROXY_HEADERS,
        "Cookie": cookie,
        "Referer": base.replace("http:", "https:") + "/requests/new/",
    }
    request = urllib.request.Request(base + "/requests/new/", data=data, headers=headers)
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

    def http_error_302(self, req, fp, code, msg, headers):
        return fp


def timed_get(url):
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=PROXY_HEADERS), timeout=TIMEOUT
        ) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status, time.perf_counter() - start


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
    if not server.startswith("postgres"):
        raise SystemExit("DATABASE_URL must point at a PostgreSQL server; the bench creates its own database")
    name = f"artemis_intake_bench_{os.getpid()}"
    parts = urllib.parse.urlsplit(server)
    database_url = urllib.parse.urlunsplit(parts._replace(path="/" + name))
    admin = [
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 5432),
        "-U",
        parts.username or "postgres",
    ]
    subprocess.run(["createdb", *admin, name], check=True)
    port = free_port()
    env = bench_env(database_url, port)
    gunicorn = None
    try:
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")
        subprocess.run(["redis-cli", "-n", "3", "flushdb"], check=False, stdout=subprocess.DEVNULL)
        gunicorn = subprocess.Popen(
            [
                str(Path(PYTHON).parent / "gunicorn"),
                "artemis_portal.wsgi",
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=ROOT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/healthz")

        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(lambda n: submit(base, n), range(SUBMISSIONS)))
        submit_seconds = time.perf_counter() - started
        codes = [status for status, _body in results]
        accepted, limited = codes.count(302), codes.count(429)
        server_errors = sum(1 for status in codes if status >= 500)
        clear_429 = all("Too many attempts" in body for status, body in results if status == 429)
        stored = count_requests(env)

        status_tokens = make_status_tokens(env, 50)
        urls = [
            f"{base}/requests/status/{status_tokens[i % len(status_tokens)]}/" for i in range(STATUS_GETS)
        ]
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
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
        subprocess.run(["dropdb", *admin, "--if-exists", name], check=False)


if __name__ == "__main__":
    sys.exit(main())
