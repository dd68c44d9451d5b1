"""Forge's invocation-token signing keys: the JWKS at ``FORGE_JWKS_URL``, cached by ``kid``.

The key set is fetched whole (one URL, every current key) and kept in the Django cache, so every process
shares one copy, plus a per-process copy of the parsed RSA keys (parsing a JWK costs more than checking a
signature). It is used for ``FORGE_JWKS_MAX_AGE_SECONDS`` and then fetched again; a ``kid`` it does not
list triggers a refresh at once (Atlassian rotates by publishing a new ``kid``), but through
``key_fetch.BoundedKeyFetcher`` with a budget of one fetch a minute and unknown ``kid``s remembered for a
minute: a stream of forged ``kid``s costs at most one request a minute. A key set that is due for a
refresh but cannot be fetched (down, 5xx) keeps serving the keys it has, with a warning; only a ``kid``
that no copy has, with the service down, is ``KeyServiceUnavailable`` (a 503).
"""

import json
import logging
import time

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from django.conf import settings
from django.core.cache import cache
from jwt.algorithms import RSAAlgorithm

from registrations import key_fetch
from registrations.key_fetch import FetchThrottled, KeyServiceUnavailable, valid_kid

__all__ = ["FetchThrottled", "KeyServiceUnavailable", "public_key", "valid_kid"]

logger = logging.getLogger("artemis.forge")

CACHE_KEY = "forge:jwks"
# Kept in the shared cache well past its max age, so an outage at refresh time still has keys to serve.
CACHE_SECONDS = 7 * 24 * 60 * 60
MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 50
# Seconds a process trusts its parsed copy before looking at the shared cache again.
LOCAL_SECONDS = 30

FETCHER = key_fetch.BoundedKeyFetcher(name="forge-jwks", per_minute=1, unknown_seconds=60)

# {"source": url, "fetched_at": epoch, "until": epoch (local copy), "keys": {kid: RSAPublicKey}}
_local = {}


def clear_local():
    """Forget this process's parsed copy (tests that change the key set behind its back)."""
    _local.clear()


def public_key(kid):
    """The RSA public key for ``kid`` from Forge's JWKS, or ``None`` if it does not list it.

    Raises ``KeyServiceUnavailable`` when the key set cannot be fetched and no copy holds ``kid``.
    """
    keys, fetched_at = _current()
    stale = keys is None or time.time() - fetched_at >= settings.FORGE_JWKS_MAX_AGE_SECONDS
    if keys is not None and kid in keys and not stale:
        return keys[kid]
    if stale:
        try:
            FETCHER.take()
            keys = _refresh()
        except KeyServiceUnavailable as exc:
            if keys is None:
                raise
            # FetchThrottled included: another request refreshed it this minute, or a flood spent it.
            if not isinstance(exc, FetchThrottled):
                logger.warning("forge jwks refresh failed, using the copy fetched before: %s", exc)
        return keys.get(kid)
    try:
        return FETCHER.lookup(kid, cached=lambda _kid: None, fetch=lambda k: _refresh().get(k))
    except FetchThrottled:
        return None  # the set was fetched less than a minute ago (or a flood spent the budget): unknown


def _current():
    """``(keys, fetched_at)`` from this process's copy or the shared cache, or ``(None, 0)``."""
    now = time.time()
    if _local.get("source") == settings.FORGE_JWKS_URL and _local["until"] > now:
        return _local["keys"], _local["fetched_at"]
    entry = cache.get(CACHE_KEY)
    if not (isinstance(entry, dict) and entry.get("source") == settings.FORGE_JWKS_URL):
        return None, 0
    keys = _parse(entry["document"])
    _keep_locally(keys, entry["fetched_at"])
    return keys, entry["fetched_at"]


def _keep_locally(keys, fetched_at):
    _local.update(
        source=settings.FORGE_JWKS_URL, fetched_at=fetched_at, until=time.time() + LOCAL_SECONDS, keys=keys
    )


def _refresh():
    """Fetch the key set, check it, share it through the cache; returns ``{kid: key}``."""
    answer = key_fetch.get(
        settings.FORGE_JWKS_URL,
        timeout=settings.FORGE_JWKS_TIMEOUT,
        max_bytes=MAX_JWKS_BYTES,
        verify=settings.FORGE_JWKS_CA_BUNDLE or True,
        accept="application/json",
    )
    if answer.status != 200:
        raise KeyServiceUnavailable(f"forge jwks answered {answer.status}")
    try:
        document = json.loads(answer.body)
    except (ValueError, RecursionError):
        raise KeyServiceUnavailable("forge jwks is not JSON") from None
    keys = _parse(document)
    if not keys:
        raise KeyServiceUnavailable("forge jwks holds no usable RS256 key")
    fetched_at = time.time()
    cache.set(
        CACHE_KEY,
        {"source": settings.FORGE_JWKS_URL, "fetched_at": fetched_at, "document": document},
        CACHE_SECONDS,
    )
    _keep_locally(keys, fetched_at)
    for kid in keys:
        FETCHER.forget_unknown(kid)
    logger.info("forge jwks fetched: %d key(s)", len(keys))
    return keys


def _parse(document):
    """``{kid: RSAPublicKey}`` of the usable keys in a JWKS document; anything else is skipped."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return {}
    keys = {}
    for entry in entries[:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        kid = entry.get("kid")
        if not valid_kid(kid) or entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
            continue
        try:
            key = RSAAlgorithm.from_jwk(entry)
        except (pyjwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue
        if isinstance(key, RSAPublicKey):
            keys[kid] = key
    return keys
