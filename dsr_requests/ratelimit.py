"""Fixed-window rate limits on the public pages, counted in Django's cache (shared via CACHE_URL).

Hand-written rather than a library: it is a dozen lines over ``cache.add``/``cache.incr``, which are
atomic on Redis and Memcached, and the client-IP rule (one trusted proxy hop) is ours to decide.
"""

import hashlib
import time

from django.core.cache import cache

from artemis_portal.client_ip import client_ip  # noqa: F401 (the views call ratelimit.client_ip)


def parse_rate(rate):
    """``"<count>/<seconds>"`` to ``(count, seconds)``; the settings module has already checked it."""
    count, seconds = rate.split("/")
    return int(count), int(seconds)


def hit(scope, key, rate):
    """Count one attempt by ``key`` in ``scope``; True if that attempt is over the limit.

    Keys are hashed so email addresses never sit in the cache in plain text.
    """
    count, seconds = parse_rate(rate)
    window = int(time.time() // seconds)
    digest = hashlib.sha256(f"{scope}:{key}".encode()).hexdigest()
    cache_key = f"dsr-rl:{digest}:{window}"
    if cache.add(cache_key, 1, timeout=seconds + 1):
        return False
    try:
        return cache.incr(cache_key) > count
    except ValueError:  # expired between add and incr
        cache.set(cache_key, 1, timeout=seconds + 1)
        return False


def seconds_until_reset(rate):
    """Seconds until the current window of ``rate`` ends, for Retry-After."""
    _count, seconds = parse_rate(rate)
    return seconds - int(time.time()) % seconds
