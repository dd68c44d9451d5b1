"""Helpers the gunicorn benches share: ports, production settings, a throw-away database, gunicorn, HTTP.

Everything here talks to 127.0.0.1 only and every HTTP call has a timeout.
"""

import base64
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TIMEOUT = 15

# Production settings mark cookies Secure and redirect http to https; the benches speak plain http on
# loopback and say it is https the way Heroku's router does (X-Forwarded-Proto), so they carry the CSRF
# cookie by hand.
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def production_env(*, database_url, port, cache_url, app_base_url=None, **overrides):
    """The environment of a production-like portal: DEBUG off, fresh keys, no .env, gunicorn on ``port``.

    ``overrides`` are further variables (rate limits, log level...), given as strings.
    """
    return {
        **os.environ,
        "ENV_FILE": "",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FERNET_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "BACKUP_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "APP_BASE_URL": app_base_url or f"https://127.0.0.1:{port}",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_HSTS_SECONDS": "0",
        "DATABASE_URL": database_url,
        "CACHE_URL": cache_url,
        "EMAIL_URL": "dummymail://",
        "TASKS_BACKEND": "immediate",
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        **overrides,
    }


def postgres_admin_args(server_url):
    """``-h host -p port -U user`` for createdb/dropdb/psql, from a postgres:// URL."""
    parts = urllib.parse.urlsplit(server_url)
    return [
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 5432),
        "-U",
        parts.username or "postgres",
    ]


@contextlib.contextmanager
def throwaway_postgres(server_url, prefix):
    """Create a database named ``<prefix>_<pid>`` on the server of ``server_url``; yield its URL; drop it."""
    if not server_url.startswith("postgres"):
        raise SystemExit(
            "the database URL must point at a PostgreSQL server; the bench creates its own database"
        )
    name = f"{prefix}_{os.getpid()}"
    admin = postgres_admin_args(server_url)
    subprocess.run(["createdb", *admin, name], check=True)
    try:
        yield urllib.parse.urlunsplit(urllib.parse.urlsplit(server_url)._replace(path="/" + name))
    finally:
        subprocess.run(["dropdb", *admin, "--if-exists", "--force", name], check=False)


def manage(env, *args):
    """Run ``manage.py`` with ``env``; output discarded, failure raises."""
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def wait_until_up(url, timeout=30):
    """Poll ``url`` until it answers 200, or give up after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"gunicorn did not answer {url} within {timeout}s")


@contextlib.contextmanager
def gunicorn(env, port, *, workers=2, log_path=None, config=True):
    """Run gunicorn on 127.0.0.1:``port`` (the project's gunicorn.conf.py); stop it on exit."""
    command = [str(Path(PYTHON).parent / "gunicorn"), "artemis_portal.wsgi", "--bind", f"127.0.0.1:{port}"]
    if config:
        command += ["--config", "gunicorn.conf.py"]
    command += ["--workers", str(workers)]
    log = open(log_path, "w") if log_path else None  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz")
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log:
            log.close()


def tree_cpu_seconds(pid):
    """User + system CPU seconds used so far by process ``pid`` and its children (Linux ``/proc``).

    For gunicorn: the master and its workers. A worker that exits takes its seconds with it, so read it
    around runs in which no worker restarts."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        # After the command: state, ppid, ..., utime (12th), stime (13th).
        if entry.name == str(pid) or fields[1] == str(pid):
            total += int(fields[11]) + int(fields[12])
    return total / tick


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Return a redirect as the response instead of following it (a 302 is the form's success)."""

    def redirect_request(self, *args, **kwargs):
        return None

    def http_error_302(self, req, fp, code, msg, headers):
        return fp


_opener = urllib.request.build_opener(NoRedirect)


def fetch(url, *, data=None, headers=None, method=None, timeout=TIMEOUT):
    """One HTTP call; returns ``(status, headers, body)``. Status 0: no answer (the body names why)."""
    request = urllib.request.Request(
        url, data=data, headers={**PROXY_HEADERS, **(headers or {})}, method=method
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()
    except (OSError, urllib.error.URLError) as error:
        return 0, {}, type(error).__name__.encode()


def submit(base, email, *, name="Bench Person", request_type="review"):
    """One requester: load the form (CSRF cookie and token) and post it; returns ``(status, body, headers)``.

    When the form page itself fails, its status and body are returned instead.
    """
    status, headers, body = fetch(base + "/requests/new/")
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body) if status == 200 else None
    if match is None:
        return status, body.decode(errors="replace"), headers
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    data = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": match.group(1).decode(),
            "request_type": request_type,
            "name": name,
            "email": email,
            "details": "load bench",
        }
    ).encode()
    referer = base.replace("http:", "https:") + "/requests/new/"
    status, headers, body = fetch(
        base + "/requests/new/", data=data, headers={"Cookie": cookie, "Referer": referer}
    )
    return status, body.decode(errors="replace"), headers


def timed_get(url, headers=None):
    """GET ``url``; returns ``(status, seconds)``."""
    start = time.perf_counter()
    status, _headers, _body = fetch(url, headers=headers)
    return status, time.perf_counter() - start


def percentile(sorted_values, fraction):
    """The ``fraction`` percentile (nearest rank) of already sorted values; 0 for none."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, max(0, int(len(sorted_values) * fraction + 0.5) - 1))]
