"""Fixtures for the Connect tests: a real HTTP install-key service on loopback, run-time RSA keys,
and token builders that use PyJWT directly (independent of the code under test)."""

import hashlib
import io
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt as pyjwt
import pytest
from atlassian_jwt.url_utils import hash_url
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.core.management import call_command
from django.test import override_settings

APP_BASE_URL = "https://privacy.example.test"
APP_KEY = "com.artemis-software.privacy.test"


@pytest.fixture(autouse=True)
def connect_settings(settings):
    """Fixed app identity for every test, and an empty cache (tenants and install keys are cached)."""
    settings.APP_BASE_URL = APP_BASE_URL
    settings.CONNECT_APP_KEY = APP_KEY
    settings.CONNECT_JWT_LEEWAY = 30
    settings.CONNECT_INSTALL_KEYS_TIMEOUT = 0.5
    cache.clear()
    yield settings
    cache.clear()


REDIS_URL = "redis://127.0.0.1:6379/9"


def redis_answers(url=REDIS_URL):
    """Whether a Redis server answers at ``url`` (CI starts one; tests that need it skip otherwise)."""
    import redis

    try:
        return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except redis.RedisError:
        return False


@pytest.fixture
def redis_cache():
    """The default cache on the real Redis at 127.0.0.1:6379 (as in production), under a key prefix of
    this test's own, so parallel runs never meet; its keys are deleted afterwards.

    Restores the previous cache itself (rather than through ``settings``) so that the autouse
    ``cache.clear()`` after the test runs on the test cache again, never ``FLUSHDB`` on Redis.
    """
    import redis

    if not redis_answers():
        pytest.skip("needs Redis on 127.0.0.1:6379 (CI starts it)")
    prefix = "test-" + uuid.uuid4().hex
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    client = redis.Redis.from_url(REDIS_URL)
    with override_settings(CACHES=caches):
        yield prefix
    for key in client.scan_iter(match=prefix + ":*", count=1000):
        client.delete(key)
    client.close()


class RsaKey:
    """An RSA key pair generated for the test run; never written to disk."""

    def __init__(self):
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )


@pytest.fixture(scope="session")
def rsa_key():
    return RsaKey()


@pytest.fixture(scope="session")
def other_rsa_key():
    return RsaKey()


class KeyService:
    """What the stand-in for connect-install-keys.atlassian.com serves: ``keys`` by kid, or a forced
    ``status`` / ``delay`` / ``body`` to simulate an outage. ``requests`` counts the fetches."""

    def __init__(self):
        self.keys = {}
        self.status = None
        self.delay = 0
        self.body = None
        self.requests = []


@pytest.fixture
def key_service(settings):
    """A real HTTP server on 127.0.0.1 serving keys at ``/<kid>``; CONNECT_INSTALL_KEYS_URL points at it."""
    state = KeyService()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            state.requests.append(self.path)
            if state.delay:
                time.sleep(state.delay)
            kid = self.path.lstrip("/")
            if state.status is not None:
                status, body = state.status, b"error"
            elif state.body is not None:
                status, body = 200, state.body
            elif kid in state.keys:
                status, body = 200, state.keys[kid].encode()
            else:
                status, body = 404, b"not found"
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-pem-file")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    settings.CONNECT_INSTALL_KEYS_URL = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def request_token(tenant, method="GET", url="/connect/identity-proof/", *, secret=None, qsh=None, **claims):
    """An HS256 request token as Atlassian makes it; ``qsh`` from atlassian-jwt unless given."""
    now = int(time.time())
    payload = {
        "iss": tenant.client_key,
        "iat": now,
        "exp": now + 180,
        "qsh": hash_url(method, url) if qsh is None else qsh,
        "sub": "557058:" + str(uuid.uuid4()),
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not Ellipsis}
    return pyjwt.encode(payload, secret or tenant.shared_secret, algorithm="HS256")


def install_token(
    key, kid, client_key, url="/connect/installed", *, method="POST", qsh=None, headers=None, **claims
):
    """An RS256 signed-install token as Atlassian makes it; a claim set to ``...`` is left out.

    Each token is distinct (its own ``jti``): signed tokens work once, and two callbacks in the same
    second must not look like a replay.
    """
    now = int(time.time())
    payload = {
        "jti": str(uuid.uuid4()),
        "iss": client_key,
        "aud": APP_BASE_URL,
        "iat": now,
        "exp": now + 180,
        "qsh": hash_url(method, url) if qsh is None else qsh,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not Ellipsis}
    return pyjwt.encode(payload, key.private, algorithm="RS256", headers={"kid": kid, **(headers or {})})


class ReportingApi:
    """What the stand-in for Atlassian's personal data reporting API answers, and what it received.

    By default it answers like Atlassian: 200 naming the sent accounts found in ``closed`` / ``updated``,
    or 204 when none are, with ``Cycle-Period: cycle``. ``script`` holds answers ``(status, headers,
    body)`` for the next calls, in order. ``received`` holds each call's site, verified claims and body.
    """

    PATH = "/rest/atlassian-connect/latest/report/accounts"

    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.secrets = {}
        self.closed, self.updated = set(), set()
        self.cycle = "168"
        self.script = []
        self.received = []
        self.rejected = []

    def site(self, name, secret):
        """A site at ``<base>/<name>/wiki`` whose tokens must be signed with ``secret``; returns its URL."""
        self.secrets[name] = secret
        return f"{self.base}/{name}/wiki"

    def answer(self, site, claims, body):
        if self.script:
            return self.script.pop(0)
        sent = {account["accountId"] for account in body["accounts"]}
        actions = [{"accountId": a, "status": "closed"} for a in sorted(sent & self.closed)]
        actions += [{"accountId": a, "status": "updated"} for a in sorted(sent & self.updated)]
        headers = {"Cycle-Period": self.cycle}
        if not actions:
            return 204, headers, b""
        return (
            200,
            {**headers, "Content-Type": "application/json"},
            json.dumps({"accounts": actions}).encode(),
        )


@pytest.fixture
def reporting_api():
    """A real HTTP server on 127.0.0.1 standing in for tenants' reporting API; it verifies every JWT.

    The token must be HS256 with the site's secret, ``iss`` = our app key, ``exp`` set, and ``qsh`` the
    SHA-256 of ``POST&/rest/atlassian-connect/latest/report/accounts&``, computed here independently.
    A request that fails any check gets a 401 and is recorded in ``rejected``.
    """
    expected_qsh = hashlib.sha256(f"POST&{ReportingApi.PATH}&".encode()).hexdigest()
    holder = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            api = holder["api"]
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            site, _sep, path = self.path.lstrip("/").partition("/wiki")
            scheme, _sep, token = (self.headers.get("Authorization") or "").partition(" ")
            try:
                assert path == ReportingApi.PATH and scheme == "JWT" and site in api.secrets
                claims = pyjwt.decode(
                    token, api.secrets[site], algorithms=["HS256"], options={"require": ["exp", "iss", "qsh"]}
                )
                assert claims["iss"] == APP_KEY and claims["qsh"] == expected_qsh
            except (AssertionError, pyjwt.InvalidTokenError) as exc:
                api.rejected.append((site, repr(exc)))
                self._send(401, {}, b"")
                return
            api.received.append({"site": site, "claims": claims, "body": body})
            self._send(*api.answer(site, claims, body))

        def _send(self, status, headers, body):
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["api"] = api = ReportingApi(server.server_address[1])
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture
def backup_dir(settings, tmp_path):
    """Backups in a private temporary folder, under a fresh key."""
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.BACKUP_STORAGE = ""
    settings.BACKUP_KEYS = [Fernet.generate_key().decode()]
    return settings.BACKUP_DIR


def run(*args):
    """Run a management command; returns what it wrote to stdout and stderr."""
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


# Forge: the https JWKS server and FIT builders (registrations/tests/forge_fixtures.py).
from registrations.tests.forge_fixtures import _jwks_certificate, forge_jwks  # noqa: E402, F401
