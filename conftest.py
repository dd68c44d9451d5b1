"""Project-wide pytest configuration."""

import email
import email.policy
import os
import socket
import time
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, settings

# Two shared cores: no per-example deadline (timing is not what these tests check), fewer examples
# locally, more when HYPOTHESIS_PROFILE=thorough.
settings.register_profile(
    "default", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _no_tenant_copies_between_tests():
    """Each process keeps recently read tenants for a moment; a test must not see the previous test's."""
    from registrations import tenant_cache

    tenant_cache.clear_local()
    yield
    tenant_cache.clear_local()


@pytest.fixture
def client():
    """pytest-django's ``client``, whose ``force_login`` of a staff user also passes the second factor.

    Staff two-factor is enforced in tests as in production; see ``security/testing.py``.
    """
    from security.testing import SecondFactorClient

    return SecondFactorClient()


@pytest.fixture(autouse=True)
def _prune_audit_before_flush(request):
    """Empty the append-only audit before a transactional test's flush on SQLite (its trigger refuses a
    plain DELETE). PostgreSQL's flush truncates, which the guard allows the superuser tests run as (and
    whose delete guard would refuse this prune of recent rows). Requesting ``transactional_db`` here
    makes this teardown run before the flush."""
    if "transactional_db" not in request.fixturenames and "live_server" not in request.fixturenames:
        marker = request.node.get_closest_marker("django_db")
        if not (marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0]))):
            yield
            return
    request.getfixturevalue("transactional_db")
    yield
    from django.db import connection

    from security.models import AccessEvent

    if connection.vendor != "postgresql":
        AccessEvent.objects.prune(before=datetime(9999, 1, 1, tzinfo=UTC))


# The start of an hour (so of every fixed rate-limit window that divides one: 60 s, 900 s, 3600 s).
FROZEN_AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def frozen_clock():
    """Wall-clock time stands still at ``FROZEN_AT`` for the test (time-machine; ``.shift()`` moves it).

    For tests that count attempts in a fixed window (``dsr_requests.ratelimit``): with a running clock, a
    window boundary between two attempts resets the count and the test fails now and then.
    """
    import time_machine

    with time_machine.travel(FROZEN_AT, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _postgres_only(request):
    """Skip, with the reason, a test marked ``postgres_only`` when the database is not PostgreSQL.

    Here, not in one app's conftest.py, so that the marker works in every app (and e2e/).
    """
    marker = request.node.get_closest_marker("postgres_only")
    if marker:
        from django.db import connection

        if connection.vendor != "postgresql":
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            pytest.skip(reason or "needs PostgreSQL (row locks, roles, triggers SQLite does not have)")


def _database_fixture(request):
    """Which of pytest-django's database fixtures a test uses, or None when it uses no database."""
    if "transactional_db" in request.fixturenames or "live_server" in request.fixturenames:
        return "transactional_db"
    marker = request.node.get_closest_marker("django_db")
    if marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])):
        return "transactional_db"
    return "db" if marker or "db" in request.fixturenames else None


@pytest.fixture(autouse=True)
def _seeded_processing_register(request):
    """The processing register as its data migration leaves it: a transactional test's flush empties the
    table for every test after it, and answering requests refuses an empty register."""
    fixture = _database_fixture(request)
    if fixture is not None:
        import importlib

        from dsr_requests.models import ProcessingActivity

        request.getfixturevalue(fixture)
        if not ProcessingActivity.objects.exists():
            seed = importlib.import_module("dsr_requests.migrations.0011_seed_processing_register")
            ProcessingActivity.objects.bulk_create(ProcessingActivity(**row) for row in seed.ACTIVITIES)
    yield


@pytest.fixture
def admin_client(db, admin_user, client):
    """pytest-django's ``admin_client``, logged in with both factors like ``client``."""
    client.force_login(admin_user)
    return client


class SmtpSink:
    """An aiosmtpd handler that keeps every message it accepts, parsed: ``messages`` is a list of
    ``(recipients, email.message.EmailMessage)``."""

    def __init__(self, port):
        self.port = port
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        self.messages.append(
            (envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=email.policy.default))
        )
        return "250 OK"

    def wait_for(self, count, *, timeout=10):
        """The first ``count`` messages, once that many have arrived (mail sent by another thread or
        process reaches the sink a moment after the page that caused it)."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} emails, got {len(self.messages)}")
            time.sleep(0.05)
        return self.messages[:count]


def free_port():
    """A TCP port on 127.0.0.1 where nothing listens right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def unreachable_s3():
    """``*_STORAGE_OPTIONS`` for a real S3 client pointed at a loopback port where nothing listens.

    Not a mock: botocore really connects and is refused at once (one attempt, short timeouts), which is
    what a storage outage looks like to our code.
    """
    from botocore.config import Config

    def options(bucket):
        return {
            "bucket_name": bucket,
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "access_key": "test",
            "secret_key": "test",
            "client_config": Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=2),
        }

    return options


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on 127.0.0.1 (aiosmtpd), with Django's SMTP backend pointed at it.

    Shared by every test where email matters (the journey, the staff digest, the worker, the browser
    tests); ``.port`` is there for subprocesses (``EMAIL_URL=smtp://127.0.0.1:<port>``).
    """
    from aiosmtpd.controller import Controller

    port = free_port()  # aiosmtpd's start-up check cannot use port 0
    sink = SmtpSink(port)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield sink
    controller.stop()
