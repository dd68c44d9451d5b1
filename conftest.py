"""Project-wide pytest configuration."""

import os
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
    """Empty the append-only audit before a transactional test's flush (SQLite's trigger refuses a plain
    DELETE; PostgreSQL's flush truncates). Requesting ``transactional_db`` here makes this teardown run
    before the flush."""
    if "transactional_db" not in request.fixturenames and "live_server" not in request.fixturenames:
        marker = request.node.get_closest_marker("django_db")
        if not (marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0]))):
            yield
            return
    request.getfixturevalue("transactional_db")
    yield
    from security.models import AccessEvent

    AccessEvent.objects.prune(before=datetime(9999, 1, 1, tzinfo=UTC))


@pytest.fixture
def admin_client(db, admin_user, client):
    """pytest-django's ``admin_client``, logged in with both factors like ``client``."""
    client.force_login(admin_user)
    return client
