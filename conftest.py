"""Project-wide pytest configuration."""

import os

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
