"""Install-key fetching against a real HTTP server on loopback."""

import contextlib
import json
from datetime import UTC, datetime

import pytest
import time_machine

from registrations import install_keys
from registrations.tests.conftest import APP_KEY, install_token


def test_key_is_fetched_by_kid_and_cached(key_service, rsa_key):
    key_service.keys["k1"] = rsa_key.public_pem
    assert install_keys.public_key("k1") == rsa_key.public_pem
    assert install_keys.public_key("k1") == rsa_key.public_pem
    assert key_service.requests == ["/k1"]


def test_unknown_kid_is_remembered_briefly_then_fetched_again(key_service, rsa_key, settings):
    """Issue 18 item 4: an unknown kid costs one fetch, then none until the memory expires."""
    settings.CONNECT_INSTALL_KEYS_UNKNOWN_SECONDS = 60
    with time_machine.travel(datetime(2026, 12, 1, 12, 0, 5, tzinfo=UTC), tick=False) as clock:
        assert install_keys.public_key("k2") is None
        key_service.keys["k2"] = rsa_key.public_pem
        assert install_keys.public_key("k2") is None
        assert key_service.requests == ["/k2"]
        clock.shift(61)
        assert install_keys.public_key("k2") == rsa_key.public_pem
    assert key_service.requests == ["/k2", "/k2"]


def test_a_stream_of_forged_kids_costs_at_most_the_minute_budget(key_service, rsa_key, settings):
    """The attack of issue 18 item 4: 200 installs, each with a new forged kid, against the real key
    service on loopback. The server sees the budget's handful of fetches, not 200; past the budget the
    lookup is refused as throttled (a 503 at the view, so a real install is retried, not refused)."""
    settings.CONNECT_INSTALL_KEYS_FETCHES_PER_MINUTE = 5
    key_service.keys["real"] = rsa_key.public_pem
    throttled = unknown = 0
    with time_machine.travel(datetime(2026, 12, 1, 12, 0, 5, tzinfo=UTC), tick=False) as clock:
        for i in range(200):
            try:
                assert install_keys.public_key(f"forged-{i}") is None
                unknown += 1
            except install_keys.FetchThrottled:
                throttled += 1
        assert len(key_service.requests) == 5
        assert (unknown, throttled) == (5, 195)
        # The same forged kids again: the five fetched are remembered, the rest still throttled.
        for i in range(200):
            with contextlib.suppress(install_keys.FetchThrottled):
                install_keys.public_key(f"forged-{i}")
        assert len(key_service.requests) == 5
        # The next minute a real kid is fetched as usual.
        clock.shift(60)
        assert install_keys.public_key("real") == rsa_key.public_pem
    assert len(key_service.requests) == 6


def test_the_fetch_budget_is_shared_by_every_source_process_through_the_cache(key_service):
    """Two fetchers of the same source (two worker processes) count against one budget."""
    first, second = install_keys.fetcher(), install_keys.fetcher()
    with time_machine.travel(datetime(2026, 12, 1, 12, 0, 5, tzinfo=UTC), tick=False):
        for fetcher in (first, second, first, second, first):
            fetcher.take()
        with pytest.raises(install_keys.FetchThrottled):
            second.take()


def test_forged_kid_installs_through_the_view_cost_a_handful_of_fetches(client, key_service, rsa_key):
    """The attack end to end: 50 signed installs with forged kids at /connect/installed. Each is
    refused (401 unknown key while the budget lasts, then 503 with Retry-After), and the key service
    on loopback is asked at most CONNECT_INSTALL_KEYS_FETCHES_PER_MINUTE times."""
    statuses = []
    with time_machine.travel(datetime(2026, 12, 1, 12, 0, 5, tzinfo=UTC), tick=False):
        for i in range(50):
            body = {
                "key": APP_KEY,
                "eventType": "installed",
                "clientKey": f"client-{i}",
                "sharedSecret": "s" * 40,
                "baseUrl": "https://acme.atlassian.net/wiki",
                "productType": "confluence",
            }
            token = install_token(rsa_key, f"forged-{i}", body["clientKey"])
            response = client.post(
                "/connect/installed",
                json.dumps(body),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"JWT {token}",
            )
            statuses.append(response.status_code)
    assert len(key_service.requests) == 5
    assert statuses == [401] * 5 + [503] * 45


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_raise_key_service_unavailable(key_service, status):
    key_service.status = status
    with pytest.raises(install_keys.KeyServiceUnavailable):
        install_keys.public_key("k3")


def test_oversized_answer_raises_key_service_unavailable(key_service):
    key_service.body = b"A" * (install_keys.MAX_KEY_BYTES + 10)
    with pytest.raises(install_keys.KeyServiceUnavailable):
        install_keys.public_key("k4")


def test_non_rsa_key_raises_key_service_unavailable(key_service):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key_service.body = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(install_keys.KeyServiceUnavailable):
        install_keys.public_key("k5")


@pytest.mark.parametrize("kid", ["", ".", "..", "a/b", "a b", "x" * 201, "ключ", "kid\n"])
def test_kids_that_could_escape_the_url_path_are_not_valid(kid):
    assert not install_keys.valid_kid(kid)


def test_ordinary_kids_are_valid():
    assert install_keys.valid_kid("prod-key-1")
    assert install_keys.valid_kid("0e50fccb-239d-4991-a5db-dc850ba3f236")
