"""Many tenants and forged issuers: bounded per-process tables, no query per forged token.

Counts queries and measures memory (tracemalloc); never times anything.
"""

import gc
import secrets
import time
import tracemalloc

import jwt as pyjwt
import pytest

from registrations import services, tenant_cache
from registrations.tests.conftest import request_token
from registrations.tests.factories import RegistrationFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("registrations.tests.urls")]


def auth(token):
    return {"HTTP_AUTHORIZATION": f"JWT {token}"}


def forged_token(client_key, url="/api/bare"):
    """A well-formed HS256 token naming a client key we never registered (any secret will do)."""
    from atlassian_jwt.url_utils import hash_url

    now = int(time.time())
    claims = {"iss": client_key, "iat": now, "exp": now + 180, "qsh": hash_url("GET", url)}
    return pyjwt.encode(claims, secrets.token_urlsafe(32), algorithm="HS256")


def test_forged_issuers_cost_one_query_each_and_none_when_they_come_again(client, django_assert_num_queries):
    forged = [f"forged-{n}" for n in range(40)]
    with django_assert_num_queries(40):
        for key in forged:
            assert client.get("/api/bare", **auth(forged_token(key))).status_code == 401
    with django_assert_num_queries(0):
        for _ in range(3):
            for key in forged:
                assert client.get("/api/bare", **auth(forged_token(key))).status_code == 401


def test_a_forged_issuer_remembered_by_the_shared_cache_costs_no_query_in_another_process(
    django_assert_num_queries,
):
    tenant_cache.get("forged-elsewhere")  # another process looked it up and cached the miss
    tenant_cache.clear_local()  # this process has never seen it
    with django_assert_num_queries(0):
        assert tenant_cache.get("forged-elsewhere") is None


def test_installing_a_client_key_remembered_as_missing_takes_effect_at_once_in_this_process():
    assert tenant_cache.get("new-site") is None
    tenant = RegistrationFactory(client_key="new-site")
    tenant_cache.forget("new-site")  # what install() does
    assert tenant_cache.get("new-site").pk == tenant.pk


def test_forged_issuers_do_not_evict_real_tenants_from_the_process_copy(settings, client):
    settings.CONNECT_TENANT_LOCAL_MAX_ENTRIES = 20
    tenants = RegistrationFactory.create_batch(5)
    for tenant in tenants:
        assert client.get("/api/bare", **auth(request_token(tenant, url="/api/bare"))).status_code == 200
    for n in range(200):
        client.get("/api/bare", **auth(forged_token(f"flood-{n}")))
    assert all(tenant.client_key in tenant_cache._local for tenant in tenants)
    assert len(tenant_cache._missing) == 20


def test_process_copy_keeps_at_most_its_cap_and_drops_the_least_recently_used(settings):
    settings.CONNECT_TENANT_LOCAL_MAX_ENTRIES = 30
    tenants = RegistrationFactory.create_batch(100)
    favourite = tenants[0]
    for tenant in tenants:
        tenant_cache.get(tenant.client_key)
        tenant_cache.get(favourite.client_key)  # used all the time: never the least recently used
        assert len(tenant_cache._local) <= 30
    assert favourite.client_key in tenant_cache._local
    assert tenants[-1].client_key in tenant_cache._local
    assert tenants[1].client_key not in tenant_cache._local
    for n in range(100):
        tenant_cache.get(f"unknown-{n}")
        assert len(tenant_cache._missing) <= 30


def test_process_copy_memory_stays_flat_once_the_cap_is_reached(settings):
    """Fill the cap, then look up three times as many other tenants and forged keys: the traced memory
    grows by at most a tenth of what filling the cap took, and each kept tenant costs under 4 KB."""
    cap = 300
    settings.CONNECT_TENANT_LOCAL_MAX_ENTRIES = cap
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    keys = [tenant.client_key for tenant in RegistrationFactory.create_batch(4 * cap)]
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for key in keys[:cap]:
            tenant_cache.get(key)
        gc.collect()
        full = tracemalloc.get_traced_memory()[0] - start
        for key in keys[cap:]:
            tenant_cache.get(key)
            tenant_cache.get("forged-" + key)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert len(tenant_cache._local) == cap and len(tenant_cache._missing) == cap
    assert full / cap < 4096
    # The missing-keys table fills too (cap short strings); nothing else may grow.
    assert after - full < full / 10 + cap * 600  # unbounded, it would grow by about 1.8 MB


def test_blocking_a_tenant_reaches_a_process_copy_that_is_full(settings, client):
    settings.CONNECT_TENANT_LOCAL_MAX_ENTRIES = 3
    tenants = RegistrationFactory.create_batch(3)
    for tenant in tenants:
        tenant_cache.get(tenant.client_key)
    services.block(registration=tenants[1], actor="test")
    response = client.get("/api/bare", **auth(request_token(tenants[1], url="/api/bare")))
    assert response.status_code == 401
