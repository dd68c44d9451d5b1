#!/usr/bin/env python3
"""Load and fault bench: mixed traffic against gunicorn + PostgreSQL, optionally through a database restart.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        /path/to/venv/bin/python bench/hardening.py [--duration 60] [--clients 50] [--workers 2]
        [--restart-postgres [--outage 5] [--restart-at 0.3]] [--cache-url redis://127.0.0.1:6379/4]

Creates its own PostgreSQL database on the server DATABASE_URL names (dropped at the end), migrates it,
registers tenants, gives stored requests status tokens, starts gunicorn with production settings (DEBUG
off, fresh keys, persistent connections with health checks, Redis cache shared by the workers; the
per-IP submission limit raised so the bench is not a rate-limit test; a 429 would be counted apart) and
runs ``--clients`` clients for ``--duration`` seconds, each picking one of:

- ``form``: GET /requests/new/ for the CSRF token, POST it with an email used nowhere else (302);
- ``status``: GET a status page with a valid token (200);
- ``connect-page``: GET /connect/identity-proof/ with an HS256 Connect JWT carrying the request's qsh (200);
- ``lifecycle``: POST /connect/enabled or /connect/disabled, HS256-signed with the tenant's secret (204);
- ``install``: a signed install (RS256, key served by an https key service on loopback) of a new tenant (204).

Checks: no 5xx; every 302 form post stored exactly one request and every 204 install one tenant (rows
counted afterwards); throughput and latency percentiles per kind.

``--restart-postgres`` (refused without the flag: it stops the server for every database on it) stops
the PostgreSQL cluster ``--restart-at`` of the way into the run, starts it again ``--outage`` seconds later
and checks: during the outage only 503s (with Retry-After, a short reason, no traceback) and fast;
/healthz 503 then 200 again; after the restart every kind succeeds again; gunicorn's workers are the same
processes (no restart). The 5xx rule becomes "no 5xx other than 503, and 503 only around the outage".

Everything talks to 127.0.0.1, every call has a timeout, the run stops by itself after --duration.
"""

import argparse
import collections
import datetime
import hashlib
import ipaddress
import json
import os
import random
import secrets
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (  # noqa: E402 (after the path set-up, when run as a script)
    fetch,
    free_port,
    gunicorn,
    manage,
    percentile,
    production_env,
    submit,
    throwaway_postgres,
)

APP_KEY = "com.artemis-software.privacy"
KID = "bench-kid-1"
WEIGHTS = {"form": 15, "status": 35, "connect-page": 28, "lifecycle": 14, "install": 8}
EXPECTED = {"form": 302, "status": 200, "connect-page": 200, "lifecycle": 204, "install": 204}
PAGE_TENANTS, LIFECYCLE_TENANTS, STATUS_TOKENS = 20, 20, 100
TRACEBACK_MARKERS = (b"Traceback", b"OperationalError", b"InterfaceError", b"psycopg", b'File "/')


def qsh(method, path, query=""):
    """Atlassian's query string hash of a request without a query (computed here, not by the app)."""
    return hashlib.sha256(f"{method}&{path.rstrip('/') or '/'}&{query}".encode()).hexdigest()


# --- the install-key service: https on loopback, a self-signed certificate the portal is told to trust -----


def tls_files(directory):
    """A self-signed certificate for 127.0.0.1 and its key, written to ``directory``; returns the paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = Path(directory) / "keys-cert.pem", Path(directory) / "keys-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def start_key_service(public_pem, cert_path, key_path):
    """Serve ``public_pem`` at ``/<KID>`` over https on 127.0.0.1; returns the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            known = self.path == f"/{KID}"
            body = public_pem if known else b"not found"
            self.send_response(200 if known else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


# --- set-up inside this process (Django pointed at the bench database) ----------------------------------


def seed(env):
    """Tenants (page and lifecycle ones) and status tokens, written with the portal's own code."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artemis_portal.settings")
    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from dsr_requests import services, tokens
    from dsr_requests.models import RightsRequest
    from registrations.models import Registration

    def tenant(prefix, i):
        secret = secrets.token_urlsafe(32)
        key = f"{prefix}-{i}-{secrets.token_hex(4)}"
        Registration.objects.create(
            client_key=key,
            shared_secret=secret,
            base_url=f"https://{prefix}{i}.atlassian.net/wiki",
            product_type="confluence",
            state=Registration.State.ENABLED,
            installed_at=timezone.now(),
            updated_at=timezone.now(),
        )
        return key, secret

    pages = [tenant("page", i) for i in range(PAGE_TENANTS)]
    lifecycle = [tenant("life", i) for i in range(LIFECYCLE_TENANTS)]
    status_tokens = []
    for i in range(STATUS_TOKENS):
        request = services.submit_request(
            request_type="review",
            name=f"Seeded {i}",
            email=f"seeded{i}@example.org",
            actor=services.REQUESTER,
        )
        token, request.status_token_hash = tokens.new_status_token()
        request.state = RightsRequest.State.VERIFYING
        request.save(update_fields=["status_token_hash", "state"])
        status_tokens.append(token)
    connection.close()  # the bench's own connection must not sit across a database restart
    return pages, lifecycle, status_tokens


# --- traffic -------------------------------------------------------------------------------------------


class Traffic:
    """What the clients need to make requests, and every result they record."""

    def __init__(self, base, app_base_url, pages, lifecycle, status_tokens, rsa_private):
        self.base, self.app_base_url = base, app_base_url
        self.pages, self.lifecycle, self.status_tokens = pages, lifecycle, status_tokens
        self.rsa_private = rsa_private
        self.results = []  # (kind, status, start offset s, seconds, short note); list.append is atomic
        self.accepted_emails, self.failed_emails, self.installed, self.failed_installs = [], [], [], []
        self.bad_bodies = []
        self.t0 = time.monotonic()

    def run(self, kind, client, n, rng):
        started = time.monotonic()
        status, body, headers = getattr(self, "do_" + kind.replace("-", "_"))(client, n, rng)
        seconds = time.monotonic() - started
        self.results.append((kind, status, started - self.t0, seconds))
        if status >= 500 or status == 0:
            retry_after = headers.get("Retry-After") if headers else None
            if (
                status != 503
                or not retry_after
                or any(m in body for m in TRACEBACK_MARKERS)
                or len(body) > 4000
            ):
                self.bad_bodies.append((kind, status, body[:200]))

    def do_form(self, client, n, rng):
        email = f"load-{client}-{n}-{secrets.token_hex(3)}@example.org"
        status, body, headers = submit(self.base, email, name=f"Load Person {client}-{n}")
        (self.accepted_emails if status == 302 else self.failed_emails).append(email)
        return status, body.encode(), headers

    def do_status(self, client, n, rng):
        token = rng.choice(self.status_tokens)
        status, headers, body = fetch(f"{self.base}/requests/status/{token}/")
        return status, body, headers

    def do_connect_page(self, client, n, rng):
        import jwt

        client_key, secret = rng.choice(self.pages)
        now = int(time.time())
        claims = {
            "iss": client_key,
            "sub": f"557058:{uuid.uuid4()}",
            "iat": now,
            "exp": now + 180,
            "qsh": qsh("GET", "/connect/identity-proof/"),
        }
        token = jwt.encode(claims, secret, algorithm="HS256")
        status, headers, body = fetch(
            f"{self.base}/connect/identity-proof/", headers={"Authorization": f"JWT {token}"}
        )
        return status, body, headers

    def do_lifecycle(self, client, n, rng):
        import jwt

        client_key, secret = rng.choice(self.lifecycle)
        event = rng.choice(["enabled", "disabled"])
        now = int(time.time())
        claims = {"iss": client_key, "iat": now, "exp": now + 180, "qsh": qsh("POST", f"/connect/{event}")}
        token = jwt.encode(claims, secret, algorithm="HS256")
        body = {"key": APP_KEY, "clientKey": client_key, "eventType": event, "productType": "confluence"}
        status, headers, answer = fetch(
            f"{self.base}/connect/{event}",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"JWT {token}", "Content-Type": "application/json"},
        )
        return status, answer, headers

    def do_install(self, client, n, rng):
        import jwt

        client_key = str(uuid.uuid4())
        now = int(time.time())
        claims = {
            "iss": client_key,
            "aud": self.app_base_url,
            "iat": now,
            "exp": now + 180,
            "qsh": qsh("POST", "/connect/installed"),
        }
        token = jwt.encode(claims, self.rsa_private, algorithm="RS256", headers={"kid": KID})
        body = {
            "key": APP_KEY,
            "clientKey": client_key,
            "sharedSecret": secrets.token_urlsafe(32),
            "baseUrl": f"https://bench-{client}-{n}.atlassian.net/wiki",
            "productType": "confluence",
            "eventType": "installed",
            "description": "load bench",
        }
        status, headers, answer = fetch(
            f"{self.base}/connect/installed",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"JWT {token}", "Content-Type": "application/json"},
        )
        (self.installed if status == 204 else self.failed_installs).append(client_key)
        return status, answer, headers


def client_loop(traffic, client, deadline):
    rng = random.Random(client)
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    n = 0
    while time.monotonic() < deadline:
        traffic.run(rng.choices(kinds, weights)[0], client, n, rng)
        n += 1


def poll_healthz(base, deadline, samples):
    """GET /healthz every 0.25 s: (offset, status, seconds), to see the outage from the platform's side."""
    t0 = samples.t0
    while time.monotonic() < deadline:
        started = time.monotonic()
        status, _headers, _body = fetch(base + "/healthz", timeout=5)
        samples.append((started - t0, status, time.monotonic() - started))
        time.sleep(0.25)


class Samples(list):
    def __init__(self, t0):
        super().__init__()
        self.t0 = t0


def pg_cluster():
    """``(version, name)`` of the local cluster, for pg_ctlcluster."""
    versions = sorted(os.listdir("/etc/postgresql"))
    return versions[-1], "main"


def restart_postgres(t0, at, outage, events):
    """Stop the cluster ``at`` seconds after ``t0``, start it ``outage`` seconds later; log both times."""
    time.sleep(max(0, at - (time.monotonic() - t0)))
    version, name = pg_cluster()
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, name]
    events["stop_requested"] = time.monotonic() - t0
    events["stop_wallclock"] = datetime.datetime.now().isoformat(timespec="seconds")
    subprocess.run([*command, "stop", "--mode", "fast"], check=True, timeout=60)
    events["stopped"] = time.monotonic() - t0
    time.sleep(outage)
    events["start_requested"] = time.monotonic() - t0
    subprocess.run([*command, "start"], check=True, timeout=60)
    events["started"] = time.monotonic() - t0
    events["start_wallclock"] = datetime.datetime.now().isoformat(timespec="seconds")


def worker_pids(master_pid):
    out = subprocess.run(
        ["ps", "--ppid", str(master_pid), "-o", "pid="], capture_output=True, text=True
    ).stdout
    return sorted(int(pid) for pid in out.split())


# --- report ----------------------------------------------------------------------------------------------


def summarise(results, duration, title):
    """Print one line per kind: count, statuses, req/s, latency percentiles."""
    print(f"\n{title}")
    print(f"{'kind':13s} {'count':>6s} {'req/s':>7s} {'p50 ms':>7s} {'p95 ms':>7s} {'p99 ms':>7s}  statuses")
    by_kind = collections.defaultdict(list)
    for kind, status, _offset, seconds in results:
        by_kind[kind].append((status, seconds))
    for kind in [*WEIGHTS, "all"]:
        rows = (
            [row for k, rows in by_kind.items() for row in rows] if kind == "all" else by_kind.get(kind, [])
        )
        if not rows:
            continue
        latencies = sorted(seconds for _status, seconds in rows)
        statuses = collections.Counter(status for status, _seconds in rows)
        print(
            f"{kind:13s} {len(rows):6d} {len(rows) / duration:7.1f} {percentile(latencies, 0.5) * 1000:7.0f} "
            f"{percentile(latencies, 0.95) * 1000:7.0f} {percentile(latencies, 0.99) * 1000:7.0f}  "
            + " ".join(f"{s}x{c}" for s, c in sorted(statuses.items()))
        )


def check_rows(accepted_emails, failed_emails, installed, failed_installs):
    """Rows afterwards: each accepted email exactly once, no email twice, each 204 install stored once."""
    from django.db import connection

    from dsr_requests import tokens
    from dsr_requests.models import RightsRequest
    from registrations.models import Registration

    connection.close()
    counts = collections.Counter(RightsRequest.objects.values_list("email_hash", flat=True))
    lost = [e for e in accepted_emails if counts[tokens.email_blind_index(e)] != 1]
    stored_after_failure = sum(1 for e in failed_emails if counts[tokens.email_blind_index(e)] == 1)
    duplicated = sum(1 for c in counts.values() if c > 1)
    keys = set(Registration.objects.filter(client_key__in=installed).values_list("client_key", flat=True))
    lost_installs = [k for k in installed if k not in keys]
    stored_failed_installs = Registration.objects.filter(client_key__in=failed_installs).count()
    connection.close()
    print(
        f"rows: {len(accepted_emails)} accepted form posts, {len(lost)} without exactly one stored request, "
        f"{duplicated} emails stored twice; {stored_after_failure} of {len(failed_emails)} failed posts were "
        f"stored anyway; {len(installed)} installs answered 204, {len(lost_installs)} not stored "
        f"({stored_failed_installs} of {len(failed_installs)} failed installs stored anyway)"
    )
    return not lost and not duplicated and not lost_installs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of traffic")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server to create the bench database on",
    )
    parser.add_argument("--cache-url", default="redis://127.0.0.1:6379/4")
    parser.add_argument(
        "--restart-postgres",
        action="store_true",
        help="stop and start the local PostgreSQL cluster during the run (affects every database on it)",
    )
    parser.add_argument("--outage", type=float, default=5, help="seconds PostgreSQL stays stopped")
    parser.add_argument(
        "--restart-at", type=float, default=0.3, help="fraction of --duration before stopping"
    )
    args = parser.parse_args()
    if args.duration > 600 or args.clients > 200:
        raise SystemExit("refusing: --duration is at most 600 s and --clients at most 200")
    if args.restart_postgres and args.duration < args.outage + 10:
        raise SystemExit("--duration must leave at least 10 s after the outage to see the recovery")

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    tmp = tempfile.mkdtemp(prefix="hardening-bench-")
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cert_path, key_path = tls_files(tmp)
    key_service = start_key_service(public_pem, cert_path, key_path)
    subprocess.run(["redis-cli", "-u", args.cache_url, "flushdb"], check=False, stdout=subprocess.DEVNULL)

    with throwaway_postgres(args.database_url, "artemis_hardening_bench") as database_url:
        port = free_port()
        env = production_env(
            database_url=database_url,
            port=port,
            cache_url=args.cache_url,
            WEB_CONCURRENCY=str(args.workers),
            DSR_RATE_SUBMIT_PER_IP="1000000/60",
            DSR_RATE_STATUS_PER_IP="1000000/60",
            CONNECT_APP_KEY=APP_KEY,
            CONNECT_INSTALL_KEYS_URL=f"https://127.0.0.1:{key_service.server_address[1]}",
            REQUESTS_CA_BUNDLE=str(cert_path),
            DB_CONN_MAX_AGE="60",
        )
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")
        pages, lifecycle, status_tokens = seed(env)
        base = f"http://127.0.0.1:{port}"
        log_path = Path(tmp) / "gunicorn.log"
        with gunicorn(env, port, workers=args.workers, log_path=log_path) as server:
            before = worker_pids(server.pid)
            traffic = Traffic(base, env["APP_BASE_URL"], pages, lifecycle, status_tokens, rsa_private)
            deadline = traffic.t0 + args.duration
            health = Samples(traffic.t0)
            events = {}
            threads = [
                threading.Thread(target=client_loop, args=(traffic, c, deadline)) for c in range(args.clients)
            ]
            threads.append(threading.Thread(target=poll_healthz, args=(base, deadline, health)))
            if args.restart_postgres:
                threads.append(
                    threading.Thread(
                        target=restart_postgres,
                        args=(traffic.t0, args.duration * args.restart_at, args.outage, events),
                    )
                )
            load_before = os.getloadavg()[0]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=args.duration + args.outage + 120)
            after = worker_pids(server.pid)
        key_service.shutdown()
        elapsed = time.monotonic() - traffic.t0
        ok = report(args, traffic, health, events, elapsed, before, after, load_before, log_path)
        ok = (
            check_rows(
                traffic.accepted_emails, traffic.failed_emails, traffic.installed, traffic.failed_installs
            )
            and ok
        )
    print("result:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def report(args, traffic, health, events, elapsed, before, after, load_before, log_path):
    """Print the numbers; return whether every check held."""
    print(
        f"gunicorn {args.workers} sync workers, PostgreSQL, Redis cache; {args.clients} clients for "
        f"{args.duration:.0f}s (ran {elapsed:.1f}s); 1-min load average before / after: "
        f"{load_before:.2f} / {os.getloadavg()[0]:.2f} (2 cores, shared)"
    )
    results = traffic.results
    ok = True
    log = log_path.read_text(errors="replace")
    five_hundreds = [r for r in results if r[1] >= 500 and r[1] != 503]
    no_answer = [r for r in results if r[1] == 0]
    if not args.restart_postgres:
        summarise(results, args.duration, "mixed traffic (statuses as status x count):")
        wrong = [r for r in results if r[1] != EXPECTED[r[0]] and r[1] != 429]
        limited = sum(1 for r in results if r[1] == 429)
        print(
            f"5xx: {sum(1 for r in results if r[1] >= 500)}, no answer: {len(no_answer)}, 429: {limited}, "
            f"other unexpected: {len(wrong)}"
        )
        ok = not wrong and not no_answer
    else:
        stop, started = events.get("stop_requested"), events.get("started")
        if stop is None or started is None:
            print("the restart did not complete:", events)
            return False
        print(
            f"PostgreSQL stop requested at {stop:.1f}s (wall clock {events['stop_wallclock']}), stopped at "
            f"{events['stopped']:.1f}s, start requested at {events['start_requested']:.1f}s, up at "
            f"{started:.1f}s (wall clock {events['start_wallclock']})"
        )
        # Requests that began more than 2 s after the start finished must all succeed.
        settle = started + 2
        before_outage = [r for r in results if r[2] + r[3] < stop]
        during = [r for r in results if r[2] + r[3] >= stop and r[2] < settle]
        after_outage = [r for r in results if r[2] >= settle]
        summarise(before_outage, stop, f"before the stop (0-{stop:.1f}s):")
        summarise(during, settle - stop, f"around the outage ({stop:.1f}-{settle:.1f}s):")
        summarise(after_outage, max(0.1, elapsed - settle), f"after recovery ({settle:.1f}s-end):")
        unavailable = sorted(r[3] for r in results if r[1] == 503)
        print(
            f"503s: {len(unavailable)}, latency p50 {percentile(unavailable, 0.5) * 1000:.0f} ms, "
            f"p95 {percentile(unavailable, 0.95) * 1000:.0f} ms, max {(unavailable or [0])[-1] * 1000:.0f} ms"
        )
        outside = [r for r in before_outage + after_outage if r[1] != EXPECTED[r[0]] and r[1] != 429]
        health_down = [s for s in health if s[1] == 503]
        health_after = [s for s in health if s[0] >= settle]
        print(
            f"/healthz: {len(health_down)} x 503 (first at {health_down[0][0]:.1f}s, last at "
            f"{health_down[-1][0]:.1f}s), slowest {max(s[2] for s in health) * 1000:.0f} ms; "
            f"after recovery {sum(1 for s in health_after if s[1] == 200)}/{len(health_after)} x 200"
            if health_down
            else "/healthz: never 503"
        )
        kinds_after = {r[0] for r in after_outage if r[1] == EXPECTED[r[0]]}
        print(
            f"unexpected answers outside the outage window: {len(outside)}; no answer: {len(no_answer)}; "
            f"kinds succeeding after recovery: {sorted(kinds_after)}"
        )
        ok = (
            not outside
            and not no_answer
            and bool(health_down)
            and all(s[1] == 200 for s in health_after)
            and kinds_after == set(WEIGHTS)
            and bool(unavailable)
            and percentile(unavailable, 0.95) < 1.0
        )
    print(
        f"5xx other than 503: {len(five_hundreds)}; 5xx bodies failing the check (503 with Retry-After, "
        f"short, no traceback): {len(traffic.bad_bodies)} {traffic.bad_bodies[:3]}"
    )
    print(
        f"gunicorn workers before / after: {before} / {after} (same processes: {before == after}); "
        f"'Traceback' lines in the server log: {log.count('Traceback')}, worker timeouts: "
        f"{log.count('WORKER TIMEOUT')}"
    )
    return ok and not five_hundreds and not traffic.bad_bodies and before == after


if __name__ == "__main__":
    sys.exit(main())
