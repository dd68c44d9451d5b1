"""Fixed-window rate limits on the public pages, counted in Django's cache (shared via CACHE_URL).

Hand-written rather than a library: it is a dozen lines over ``cache.add``/``cache.incr``, which are
atomic on Redis and Memcached, and the client-IP rule (one trusted proxy hop) is ours to decide.
"""

import contextlib
import hashlib
import time

from django.core.cache import cache

from artemis_portal.client_ip import client_ip  # noqa: F401 (the views call ratelimit.client_ip)


def parse_rate(rate):
    """``"<count>/<seconds>"`` to ``(count, seconds)``; the settings module has already checked it."""
    count, seconds = rate.split("/")
    return int(count), int(seconds)


def _cache_key(scope, key, seconds):
    """The counter of ``key`` in ``scope`` for the current window; hashed, so no address sits in the cache."""
    window = int(time.time() // seconds)
    digest = hashlib.sha256(f"{scope}:{key}".encode()).hexdigest()
    return f"dsr-rl:{digest}:{window}"


def hit(scope, key, rate):
    """Count one attempt by ``key`` in ``scope``; True if that attempt is over the limit.

    Keys are hashed so email addresses never sit in the cache in plain text.
    """
    count, seconds = parse_rate(rate)
    cache_key = _cache_key(scope, key, seconds)
    if cache.add(cache_key, 1, timeout=seconds + 1):
        return False
    try:
        return cache.incr(cache_key) > count
    except ValueError:  # expired between add and incr
        cache.set(cache_key, 1, timeout=seconds + 1)
        return False


def release(scope, key, rate):
    """Take back one attempt counted by ``hit`` (the submission it counted was not accepted after all)."""
    _count, seconds = parse_rate(rate)
    with contextlib.suppress(ValueError):  # the window ended meanwhile: nothing to take back
        cache.decr(_cache_key(scope, key, seconds))


def seconds_until_reset(rate):
    """Seconds until the current window of ``rate`` ends, for Retry-After."""
    _count, seconds = parse_rate(rate)
    return seconds - int(time.time()) % seconds
