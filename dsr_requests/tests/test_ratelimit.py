"""Fixed-window rate limits and the client IP they count by."""

import time_machine
from django.core.cache import cache
from django.test import RequestFactory

from dsr_requests import ratelimit


def test_allows_up_to_the_count_then_refuses_within_the_window():
    assert [ratelimit.hit("t", "k", "3/60") for _ in range(4)] == [False, False, False, True]


def test_a_new_window_starts_afresh():
    with time_machine.travel(0, tick=False) as traveller:
        assert [ratelimit.hit("t", "k", "1/60") for _ in range(2)] == [False, True]
        traveller.shift(61)
        assert ratelimit.hit("t", "k", "1/60") is False


def test_keys_and_scopes_are_counted_separately():
    assert ratelimit.hit("a", "k", "1/60") is False
    assert ratelimit.hit("b", "k", "1/60") is False
    assert ratelimit.hit("a", "other", "1/60") is False


def test_cache_keys_never_contain_the_key_in_plain_text():
    ratelimit.hit("submit-email", "ada@example.org", "5/60")
    assert not any("ada" in str(key) for key in getattr(cache, "_cache", {}))


def test_client_ip_is_remote_addr_unless_behind_a_proxy(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 5.6.7.8")
    settings.DSR_BEHIND_PROXY = False
    assert ratelimit.client_ip(request) == "10.0.0.1"
    settings.DSR_BEHIND_PROXY = True
    assert ratelimit.client_ip(request) == "5.6.7.8"
    assert ratelimit.client_ip(RequestFactory().get("/", REMOTE_ADDR="10.0.0.1")) == "10.0.0.1"


def test_seconds_until_reset_counts_down_to_the_end_of_the_window():
    with time_machine.travel(3600 * 1000 + 10, tick=False):
        assert ratelimit.seconds_until_reset("5/3600") == 3590
