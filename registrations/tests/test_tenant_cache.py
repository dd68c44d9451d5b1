"""Tenant cache: warm lookups cost no query, changes are seen at once, stale ciphertext falls back."""

import pytest
from django.core.cache import cache

from registrations import services, tenant_cache
from registrations.tests.factories import RegistrationFactory

pytestmark = pytest.mark.django_db


def test_warm_lookup_makes_no_query(django_assert_num_queries):
    tenant = RegistrationFactory()
    with django_assert_num_queries(1):
        tenant_cache.get(tenant.client_key)
    with django_assert_num_queries(0):
        cached = tenant_cache.get(tenant.client_key)
    assert cached.pk == tenant.pk
    assert cached.shared_secret == tenant.shared_secret
    assert cached.base_url == tenant.base_url


def test_unknown_client_key_is_cached_as_missing(django_assert_num_queries):
    with django_assert_num_queries(1):
        assert tenant_cache.get("nobody") is None
    with django_assert_num_queries(0):
        assert tenant_cache.get("nobody") is None


def test_lifecycle_changes_replace_the_cached_record():
    tenant = RegistrationFactory()
    tenant_cache.get(tenant.client_key)
    services.apply_event(client_key=tenant.client_key, event="disabled", actor="test")
    assert tenant_cache.get(tenant.client_key).state == "disabled"


def test_entry_cached_under_a_removed_key_is_read_again_from_the_database():
    tenant = RegistrationFactory()
    tenant_cache.get(tenant.client_key)
    key = tenant_cache._key(tenant.client_key)
    entry = list(cache.get(key))
    entry[tenant_cache._SECRET_INDEX] = b"gAAAAAnot-a-valid-token"
    cache.set(key, tuple(entry))
    assert tenant_cache.get(tenant.client_key).shared_secret == tenant.shared_secret
