"""Fixtures shared by the rights-request tests."""

import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def uk_calendar(settings):
    """The calendar the deadline tests were worked out by hand against: UK-wide holidays, 30 working days."""
    settings.DSR_HOLIDAY_COUNTRY = "GB"
    settings.DSR_HOLIDAY_SUBDIV = None
    settings.DSR_WORKING_DAYS = 30


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run on-commit callbacks (email sending) as a real commit would, inside the test transaction."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def link_in(body, path_prefix):
    """The path and query of the first link in ``body`` under ``path_prefix``."""
    match = re.search(r"https?://[^/\s]+(" + re.escape(path_prefix) + r"[^\s\"<]*)", body)
    assert match, f"no {path_prefix} link in the email"
    return match.group(1).replace("&amp;", "&")


def export_folder():
    """The local folder export files go to in tests (``EXPORT_STORAGE`` unset)."""
    return Path(django_settings.EXPORT_DIR)


@pytest.fixture(autouse=True)
def _export_dir(settings, tmp_path):
    """Export files of a test go to its own folder."""
    settings.EXPORT_DIR = tmp_path / "exports"
    return settings.EXPORT_DIR


@pytest.fixture
def ready_copy(committed):
    """A completed copy request with its export written; returns (request, status token)."""
    from django.core import mail

    from dsr_requests import roles, services
    from dsr_requests.models import RequestType
    from dsr_requests.tests.factories import StaffUserFactory, approved_request

    approver = StaffUserFactory(roles=[roles.APPROVER])
    rights_request, token = approved_request(RequestType.COPY, approver=approver, email="reader@example.org")
    with committed():
        services.start_fulfilment(rights_request=rights_request, actor=approver)
    mail.outbox.clear()
    return rights_request, token


def ask_for_code(client, token, committed):
    """Ask for a download code from the status page; returns the code from the email."""
    from django.core import mail
    from django.urls import reverse

    with committed():
        response = client.post(reverse("dsr_requests:download-code", args=[token]))
    assert response.status_code == 302
    (message,) = mail.outbox
    mail.outbox.clear()
    return re.search(r"download code is \*?\*?([0-9A-Z]{8})", message.body).group(1)


def download(client, token, code):
    """Post a download code on the status page."""
    from django.urls import reverse

    return client.post(reverse("dsr_requests:download", args=[token]), {"code": code})


# Forge: the https JWKS server and FIT builders (registrations/tests/forge_fixtures.py).
from registrations.tests.forge_fixtures import _jwks_certificate, forge_jwks  # noqa: E402, F401
