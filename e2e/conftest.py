"""Fixtures of the real-browser tests: chromium through Playwright, axe-core, and the live site.

The site is Django's live server (pytest-django ``live_server``: a real HTTP server on loopback in a thread
of this process, on the test database, transactional), with emails going to a real SMTP server
(``smtp_server`` from the root conftest) and background jobs run inline (the immediate tasks backend).

Prerequisites: chromium at ``/usr/bin/chromium`` (``CHROMIUM_PATH``) and axe-core in ``node_modules``
(``npm ci``; ``python3 dev.py test`` runs it). When one is missing the tests fail with the reason under
CI (``CI`` set) and are skipped with the reason elsewhere, so a developer without chromium can still run
the rest of the suite.
"""

import os
import shutil
import subprocess

import pytest
from django.apps import apps as django_apps
from django.core.cache import cache

from e2e.browser import AXE_JS, CHROMIUM, CHROMIUM_ARGS, ROOT


def _missing(reason):
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"browser tests need {reason}")


@pytest.fixture(scope="session")
def axe_script():
    """The path of axe.min.js, installing the locked npm dependencies first when they are missing."""
    if not AXE_JS.is_file() and shutil.which("npm"):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=False)
    if not AXE_JS.is_file():
        _missing(f"axe-core: {AXE_JS} is missing and `npm ci` could not install it (is npm installed?)")
    return AXE_JS


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, driven by Playwright's sync API; one launch per test module.

    Playwright's sync API keeps an asyncio loop marked as running on this thread while it is started,
    which Django's async-safety check would take for an async context and refuse every ORM call of the
    test (and the transactional flush after it). ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set only while the
    browser is up: the ORM calls are really synchronous, from this thread.
    """
    if not CHROMIUM.is_file():
        _missing(f"chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)")
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield launched
            launched.close()


@pytest.fixture
def new_context(browser):
    """Make a fresh browser context (its own cookies: one per person); all are closed after the test.

    ``bypass_csp=True`` (for the accessibility check, which injects axe-core whatever
    Content-Security-Policy the site sends) is the caller's choice: the journey and the keyboard test
    run under the site's real policy.
    """
    made = []

    def make(**options):
        context = browser.new_context(accept_downloads=True, **options)
        context.set_default_timeout(15_000)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


@pytest.fixture
def site(live_server, settings, smtp_server, tmp_path):
    """The live portal's base URL, with emails to the SMTP sink and jobs run inline.

    Email links are built from ``APP_BASE_URL``, so it is the live server's address; rate-limit counters
    start empty; the role groups exist (an earlier transactional test's flush may have removed the rows
    their data migration made).
    """
    from dsr_requests import roles

    settings.APP_BASE_URL = live_server.url
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    roles.sync_role_groups(django_apps)
    cache.clear()
    yield live_server.url
    cache.clear()
