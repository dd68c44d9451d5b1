"""Tenant cache: warm lookups cost no query, changes are seen at once, stale ciphertext falls back."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache import cache

from registrations import services, tenant_cache
from registrations.models import Registration
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
    tag, values = cache.get(key)
    values = list(values)
    values[tenant_cache._SECRET_INDEX] = b"gAAAAAnot-a-valid-token"
    cache.set(key, (tag, tuple(values)))
    assert tenant_cache.get(tenant.client_key).shared_secret == tenant.shared_secret


def test_a_read_from_before_a_disable_cannot_put_the_enabled_state_back(django_assert_num_queries):
    """The race: a request reads the row, the site is disabled and the entry dropped, then the request fills.

    The fill happens after the change here by replaying it: the stale object is what the slow request read.
    """
    tenant = RegistrationFactory()
    stale = Registration.objects.get(pk=tenant.pk)
    services.apply_event(client_key=tenant.client_key, event="disabled", actor="test")
    # What the slow request would now write: the row as it was before the disable.
    key = tenant_cache._key(tenant.client_key)
    values = [getattr(stale, name) for name in tenant_cache._ATTNAMES]
    values[tenant_cache._SECRET_INDEX] = tenant_cache._SECRET_FIELD.fernet.encrypt(b"x")
    assert cache.add(key, (tenant_cache._COLUMNS_TAG, tuple(values)), 300) is False
    # Lookups during the tombstone read the database and see the change.
    with django_assert_num_queries(1):
        assert tenant_cache.get(tenant.client_key).state == "disabled"
    assert cache.get(key) == tenant_cache.TOMBSTONE


def test_lookups_fill_the_cache_again_once_the_tombstone_expires(django_assert_num_queries):
    tenant = RegistrationFactory()
    tenant_cache.forget(tenant.client_key)
    cache.delete(tenant_cache._key(tenant.client_key))  # the tombstone's expiry
    tenant_cache.get(tenant.client_key)
    with django_assert_num_queries(0):
        assert tenant_cache.get(tenant.client_key).pk == tenant.pk


def test_an_entry_written_with_other_columns_is_a_miss_not_an_error(django_assert_num_queries):
    """After a deploy that adds a column, entries of the previous release must not build a wrong record."""
    tenant = RegistrationFactory()
    key = tenant_cache._key(tenant.client_key)
    cache.set(key, ("0123456789abcdef", ("an", "older", "row")))
    with django_assert_num_queries(1):
        assert tenant_cache.get(tenant.client_key).shared_secret == tenant.shared_secret
    cache.set(key, ("legacy", "tuple", "without", "a", "tag"))
    assert tenant_cache.get(tenant.client_key).pk == tenant.pk


def test_an_enabled_tenant_is_kept_in_the_process_and_served_without_the_shared_cache():
    tenant = RegistrationFactory()
    tenant_cache.get(tenant.client_key)
    cache.clear()  # the shared cache gone: the process's own copy still answers
    assert tenant_cache.get(tenant.client_key).shared_secret == tenant.shared_secret


def test_the_process_copy_expires_so_another_processs_change_is_seen_within_seconds(settings):
    """Another process disabled the site: it tombstoned the shared cache, but cannot reach our copy."""
    settings.CONNECT_TENANT_LOCAL_SECONDS = 2
    tenant = RegistrationFactory()
    with time_machine.travel(datetime(2026, 5, 1, 12, 0, tzinfo=UTC), tick=False) as clock:
        tenant_cache.get(tenant.client_key)
        Registration.objects.filter(pk=tenant.pk).update(state="disabled")
        cache.set(tenant_cache._key(tenant.client_key), tenant_cache.TOMBSTONE)
        clock.shift(timedelta(seconds=1.9))
        assert tenant_cache.get(tenant.client_key).state == "enabled"
        clock.shift(timedelta(seconds=0.1))
        assert tenant_cache.get(tenant.client_key).state == "disabled"


def test_a_clock_step_backwards_ends_the_process_copy_instead_of_prolonging_it(settings):
    settings.CONNECT_TENANT_LOCAL_SECONDS = 2
    tenant = RegistrationFactory()
    with time_machine.travel(datetime(2026, 5, 1, 12, 0, tzinfo=UTC), tick=False) as clock:
        tenant_cache.get(tenant.client_key)
        Registration.objects.filter(pk=tenant.pk).update(state="disabled")
        cache.set(tenant_cache._key(tenant.client_key), tenant_cache.TOMBSTONE)
        clock.move_to(datetime(2026, 5, 1, 11, 0, tzinfo=UTC))
        assert tenant_cache.get(tenant.client_key).state == "disabled"


def test_a_change_in_this_process_clears_its_copy_at_once():
    tenant = RegistrationFactory()
    tenant_cache.get(tenant.client_key)
    services.block(registration=tenant, actor="test")
    assert tenant_cache.get(tenant.client_key).blocked_at is not None


def test_refused_tenants_are_not_kept_in_the_process(settings):
    for state in ("disabled", "uninstalled", "installed"):
        tenant = RegistrationFactory(state=state)
        tenant_cache.get(tenant.client_key)
        assert tenant.client_key not in tenant_cache._local
    tenant = RegistrationFactory()
    settings.CONNECT_TENANT_LOCAL_SECONDS = 0
    tenant_cache.get(tenant.client_key)
    assert tenant.client_key not in tenant_cache._local
