"""Fixtures shared by the rights-request tests."""

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run on-commit callbacks (email sending) as a real commit would, inside the test transaction."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def link_in(body, path_prefix):
    """The path and query of the first link in ``body`` under ``path_prefix``."""
    match = re.search(r"https?://[^/\s]+(" + re.escape(path_prefix) + r"[^\s\"<]*)", body)
    assert match, f"no {path_prefix} link in the email"
    return match.group(1).replace("&amp;", "&")


@pytest.fixture(autouse=True)
def _postgres_only(request):
    """Skip, with the reason, a test marked ``postgres_only`` when the database is not PostgreSQL."""
    if request.node.get_closest_marker("postgres_only"):
        from django.db import connection

        if connection.vendor != "postgresql":
            pytest.skip("needs PostgreSQL: SQLite has no row locks (select_for_update is a no-op)")


def export_folder():
    """The local folder export files go to in tests (``EXPORT_STORAGE`` unset)."""
    return Path(django_settings.EXPORT_DIR)


@pytest.fixture(autouse=True)
def _export_dir(settings, tmp_path):
    """Export files of a test go to its own folder."""
    settings.EXPORT_DIR = tmp_path / "exports"
    return settings.EXPORT_DIR
