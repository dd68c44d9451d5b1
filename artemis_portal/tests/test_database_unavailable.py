"""A database that is down or restarting: every page answers a fast 503 with a short reason, and the
portal reconnects by itself once the database is back.

The outage is real, not a mock: the ``default`` connection is swapped for one whose settings point at a
database that cannot be opened (a closed loopback port on PostgreSQL, a file in a missing folder on
SQLite), so the driver itself raises, as it does while PostgreSQL restarts.
"""

import logging
import socket

import pytest
from django.db import close_old_connections, connection, connections
from django.test import Client

from artemis_portal.middleware import RETRY_AFTER_SECONDS

pytestmark = pytest.mark.django_db

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="terminating a server connection needs PostgreSQL"
)


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _replace_default(settings_dict):
    """Put a new ``default`` connection with ``settings_dict`` in place; returns the one it replaced."""
    original = connections["default"]
    replacement = type(original)(settings_dict, "default")
    connections["default"] = replacement
    return original, replacement


@pytest.fixture
def database_down(tmp_path):
    """Make every new connection of ``default`` fail the way a stopped server does, for one test."""
    settings_dict = dict(connections["default"].settings_dict)
    if connection.vendor == "postgresql":
        settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))
    else:
        settings_dict.update(NAME=str(tmp_path / "missing-folder" / "db.sqlite3"))
    original, replacement = _replace_default(settings_dict)
    try:
        yield
    finally:
        replacement.close()
        connections["default"] = original


@pytest.fixture
def client():
    """A client that returns a 500 as a response, as a real server would, instead of raising."""
    return Client(raise_request_exception=False)


def test_status_page_answers_503_with_a_short_reason_and_retry_after_when_the_database_is_down(
    client, database_down
):
    response = client.get("/requests/status/" + "a" * 64 + "/")
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    assert "Briefly unavailable" in body
    assert "Traceback" not in body and "OperationalError" not in body and "127.0.0.1" not in body


def test_form_post_answers_503_when_the_database_is_down(client, database_down):
    response = client.post(
        "/requests/new/",
        {"request_type": "review", "name": "Ada", "email": "ada@example.org", "details": "x"},
    )
    assert response.status_code == 503
    assert "Briefly unavailable" in response.content.decode()


def test_lifecycle_call_answers_503_as_json_when_the_database_is_down(client, database_down, settings):
    """Atlassian retries a lifecycle callback that gets a 5xx; the body is JSON like its other answers."""
    import json

    from django.core.cache import cache

    from registrations.tests.conftest import request_token
    from registrations.tests.factories import RegistrationFactory

    cache.clear()  # the tenant must not come from the cache

    # The tenant is built without saving: the database is down, and the lookup must fail on it.
    tenant = RegistrationFactory.build(client_key="site-down")
    token = request_token(tenant, "POST", "/connect/enabled")
    response = client.post(
        "/connect/enabled",
        data=json.dumps({"key": settings.CONNECT_APP_KEY, "clientKey": "site-down", "eventType": "enabled"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {token}",
    )
    assert response.status_code == 503
    assert response.json() == {"error": "The service is briefly unavailable; please try again in a minute."}
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)


def test_healthz_answers_503_when_the_database_is_down(client, database_down):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unavailable"}


def test_session_save_in_middleware_is_a_503_too(client, database_down):
    """A failure outside any view (here the session middleware saving) reaches the 500 handler: a 503."""
    client.cookies["sessionid"] = "x" * 32
    response = client.get("/admin/login/")
    assert response.status_code == 503
    assert "Briefly unavailable" in response.content.decode()


def test_access_log_still_records_the_503_without_database_details(client, database_down, caplog):
    with caplog.at_level(logging.INFO):
        client.get("/requests/status/" + "b" * 64 + "/", HTTP_X_REQUEST_ID="outage-request-1")
    access = [r.getMessage() for r in caplog.records if r.name == "artemis.access"]
    # (The token in the path is masked by the log filter, as any long opaque string is.)
    assert access and access[-1].startswith("GET /") and " 503 " in access[-1]
    warning = [r.getMessage() for r in caplog.records if r.name == "artemis.database"]
    assert len(warning) == 1 and warning[0].startswith("database unavailable (OperationalError) on GET /")
    assert not any("127.0.0.1" in r.getMessage() for r in caplog.records)


def test_other_server_errors_are_still_500(client, settings):
    """Only connection errors become 503s: a bug stays a 500 (and is reported as one)."""
    settings.ROOT_URLCONF = "artemis_portal.tests.test_pages"
    assert client.get("/boom/").status_code == 500


@on_postgresql
def test_a_persistent_connection_killed_by_the_server_is_replaced_on_the_next_request(client):
    """What a PostgreSQL restart does to a kept-open connection: the health check drops it, the next
    request connects afresh, no process restart needed."""
    settings_dict = {**connections["default"].settings_dict, "CONN_MAX_AGE": 600, "CONN_HEALTH_CHECKS": True}
    original, replacement = _replace_default(settings_dict)
    try:
        assert client.get("/healthz").status_code == 200
        pid = replacement.connection.info.backend_pid
        with original.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        # The test client does not run the request_started/finished connection housekeeping that a real
        # server does; do it here, as gunicorn's worker would between requests.
        close_old_connections()
        response = client.get("/healthz")
        assert response.status_code == 200
        assert replacement.connection.info.backend_pid != pid
    finally:
        replacement.close()
        connections["default"] = original


@on_postgresql
def test_a_connection_lost_mid_request_is_a_503_then_the_next_request_recovers(client):
    settings_dict = {**connections["default"].settings_dict, "CONN_MAX_AGE": 600, "CONN_HEALTH_CHECKS": False}
    original, replacement = _replace_default(settings_dict)
    try:
        assert client.get("/healthz").status_code == 200
        with original.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [replacement.connection.info.backend_pid])
        response = client.get("/requests/status/" + "c" * 64 + "/")
        assert response.status_code == 503
        close_old_connections()
        assert client.get("/healthz").status_code == 200
    finally:
        replacement.close()
        connections["default"] = original


def test_landing_page_needs_no_database_and_stays_up_during_an_outage(client, database_down):
    assert client.get("/").status_code == 200
