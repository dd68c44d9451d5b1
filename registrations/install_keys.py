"""Atlassian's signed-install public keys, fetched by ``kid`` and cached.

A ``kid`` names one key for good (Atlassian rotates by issuing a new ``kid``), so a fetched key is cached
for a day and a rotation never waits for the cache. The service being down, slow or answering 5xx is
``KeyServiceUnavailable`` (the lifecycle view answers 503 and Atlassian retries the install); only a 404
(or other 4xx) means the ``kid`` is unknown, which is the token's fault (401).

Fetches go through ``key_fetch.BoundedKeyFetcher`` (shared with Forge's JWKS): an unknown ``kid`` is
remembered for ``CONNECT_INSTALL_KEYS_UNKNOWN_SECONDS`` and at most
``CONNECT_INSTALL_KEYS_FETCHES_PER_MINUTE`` fetches go out a minute, so a stream of installs with
forged ``kid``s costs a handful of requests. Past the budget ``FetchThrottled`` (a
``KeyServiceUnavailable``) is raised: a 503 with ``Retry-After``, so a real install that meets a
flood is retried by Atlassian rather than refused.
"""

import hashlib
import logging
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.conf import settings
from django.core.cache import cache

from registrations import key_fetch
from registrations.key_fetch import FetchThrottled, KeyServiceUnavailable, valid_kid

__all__ = ["FetchThrottled", "KeyServiceUnavailable", "public_key", "valid_kid"]

logger = logging.getLogger("artemis.connect")

CACHE_SECONDS = 24 * 60 * 60
MAX_KEY_BYTES = 16 * 1024


def fetcher():
    """The bounded fetcher of this source, with the current settings (tests change them)."""
    return key_fetch.BoundedKeyFetcher(
        name="connect-install-keys",
        per_minute=settings.CONNECT_INSTALL_KEYS_FETCHES_PER_MINUTE,
        unknown_seconds=settings.CONNECT_INSTALL_KEYS_UNKNOWN_SECONDS,
    )


def _cache_key(kid):
    return "connect:install-key:" + hashlib.sha256(kid.encode()).hexdigest()


def public_key(kid):
    """The PEM key for ``kid``, or ``None`` if the service says (or said recently) it does not exist."""
    return fetcher().lookup(kid, cached=lambda k: cache.get(_cache_key(k)), fetch=_fetch_and_cache)


def _fetch_and_cache(kid):
    pem = _fetch(kid)
    if pem is not None:
        cache.set(_cache_key(kid), pem, CACHE_SECONDS)
    return pem


def _fetch(kid):
    """GET ``<CONNECT_INSTALL_KEYS_URL>/<kid>`` with a timeout, a status check and a size limit."""
    url = f"{settings.CONNECT_INSTALL_KEYS_URL}/{quote(kid, safe='')}"
    answer = key_fetch.get(url, timeout=settings.CONNECT_INSTALL_KEYS_TIMEOUT, max_bytes=MAX_KEY_BYTES)
    if answer.status != 200:
        logger.warning("connect install key unknown kid=%s status=%s", kid, answer.status)
        return None
    try:
        loaded = load_pem_public_key(answer.body)
    except (ValueError, TypeError):
        raise KeyServiceUnavailable("install-key service sent something that is not a PEM key") from None
    if not isinstance(loaded, RSAPublicKey):
        raise KeyServiceUnavailable("install-key service sent a key that is not RSA")
    return answer.body.decode("ascii")
