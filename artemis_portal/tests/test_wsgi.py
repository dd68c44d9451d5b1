"""The WSGI entry point gunicorn runs: requests Django cannot even build are a 400, not a 500."""

import io
from wsgiref.util import setup_testing_defaults

import pytest
from django.core import signals
from django.db import close_old_connections

from artemis_portal.wsgi import application

pytestmark = pytest.mark.django_db


def call(body=b"", **environ):
    """Call the real WSGI application as gunicorn would; returns (status line, body)."""
    env = {}
    setup_testing_defaults(env)
    env.update({"HTTP_HOST": "testserver", "REQUEST_METHOD": "GET", "PATH_INFO": "/", **environ})
    env["wsgi.input"] = io.BytesIO(body)
    env["CONTENT_LENGTH"] = str(len(body))
    started = []
    # As Django's test client does: the per-request connection housekeeping would close the test's
    # transaction (a real server has none to protect).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        result = application(env, lambda status, headers, exc_info=None: started.append(status))
        body = b"".join(result)
        if hasattr(result, "close"):
            result.close()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    return started[0], body


def test_too_many_query_fields_with_a_charset_content_type_is_a_400_not_an_exception(settings):
    """Regression: Django raised TooManyFieldsSent while building the request, so gunicorn answered 500.

    Seen under gunicorn with ``GET /?a&a&…`` (1,100 fields, 2.2 kB: within gunicorn's request-line limit).
    """
    query = "&".join(["a"] * (settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 100))
    status, body = call(QUERY_STRING=query, CONTENT_TYPE="text/plain; charset=utf-8")
    assert status == "400 Bad Request"
    assert b"Traceback" not in body


def test_too_many_query_fields_without_a_charset_is_django_s_own_400(settings):
    query = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    status, _body = call(QUERY_STRING=query, PATH_INFO="/requests/confirm/")
    assert status.startswith("400")


def test_an_ordinary_request_passes_through(settings):
    status, body = call(PATH_INFO="/")
    assert status == "200 OK"
    assert b"Your privacy rights" in body


PATHS = [
    "/",
    "/healthz",
    "/requests/new/",
    "/requests/confirm/",
    "/requests/status/",
    # PATH_INFO arrives percent-decoded, as bytes read as latin-1: these are invalid UTF-8.
    "/requests/status/\xff\xfe/",
    "/requests/status/\xff/answer/",
    "/requests/transfer/\xc0\xaf/",
    "/connect/identity-proof/",
    "/connect/enabled",
    "/connect/installed",
    "/atlassian-connect.json",
]
QUERIES = [
    "",
    "a=%ff",
    "jwt=%ff%00",
    "jwt=a&jwt=b",
    "&".join(f"f{i}=1" for i in range(1200)),
    "jwt=" + "a" * 9000,
]
BODIES = [
    (b"", "text/plain; charset=utf-8"),
    (b"\xff\xfe", "application/json"),
    (b"a=%ff&b=\x00", "application/x-www-form-urlencoded"),
    (b"x", "multipart/form-data; boundary="),
    (b"email=a%40b.c&name=%00", "application/x-www-form-urlencoded; charset=latin-1"),
    (b"[]", "application/x-www-form-urlencoded; charset=no-such-codec"),
]


@pytest.mark.parametrize("path", PATHS)
def test_malformed_requests_through_the_wsgi_entry_point_are_never_a_5xx(path, settings):
    """Broken encodings, NUL bytes, too many fields, bad multipart, odd charsets: a 4xx (or the page)."""
    settings.DSR_RATE_STATUS_PER_IP = settings.DSR_RATE_SUBMIT_PER_IP = "1000000/60"
    failures = []
    for query in QUERIES:
        for body, content_type in BODIES:
            for method in ("GET", "POST"):
                status, content = call(
                    body,
                    PATH_INFO=path,
                    QUERY_STRING=query,
                    REQUEST_METHOD=method,
                    CONTENT_TYPE=content_type,
                    HTTP_AUTHORIZATION="JWT eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOltdfQ.x",
                )
                if int(status[:3]) >= 500 or b"Traceback" in content:
                    failures.append((method, query[:20], content_type, status))
    assert not failures, failures[:5]
