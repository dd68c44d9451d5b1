"""Bounded fetching of public keys by ``kid``: one piece for Connect's install keys and Forge's JWKS.

A token's ``kid`` header is chosen by whoever sent the token, before anything is verified. Fetching a key
for every ``kid`` we have not seen would let anyone turn a stream of forged tokens into a stream of
outbound requests to Atlassian (and get us rate-limited there, which would then refuse real installs). So
every key lookup here goes through the same three rules, shared by all processes through the Django cache:

1. a key already fetched is answered from the caller's own cache (no fetch);
2. a ``kid`` the key service said it does not know is remembered as unknown for ``unknown_seconds`` and
   answered "unknown" without a fetch;
3. fetches of one source are capped at ``per_minute`` in any 60 seconds; past the cap ``FetchThrottled``
   is raised and the caller decides what that means (a 503 for Connect's signed install, so Atlassian
   retries; an unknown ``kid`` for Forge, whose key set was fetched less than a minute ago anyway).

So a stream of N forged ``kid``s costs at most ``per_minute`` outbound requests a minute, however large N
is and however many worker processes share the cache. ``get`` is the one HTTP GET both sources use: a
timeout on every call, a status check (429 and 5xx mean the service is unavailable, not that the token is
bad), a size limit and a CA bundle that only tests set.
"""

import hashlib
import logging
import re
from dataclasses import dataclass

import requests
import urllib3
from django.core.cache import cache

logger = logging.getLogger("artemis.connect")

KID = re.compile(r"[A-Za-z0-9._:-]{1,200}")


class KeyServiceUnavailable(Exception):
    """The key service could not answer (down, slow, 429/5xx, or nonsense); callers answer 503."""


class FetchThrottled(KeyServiceUnavailable):
    """This source already made its allowed fetches this minute; no request was sent."""


def valid_kid(kid):
    """A ``kid`` we are willing to look up (and put into a URL path): plain token characters only."""
    return isinstance(kid, str) and bool(KID.fullmatch(kid)) and kid not in {".", ".."}


@dataclass(frozen=True)
class BoundedKeyFetcher:
    """The fetch budget and unknown-``kid`` memory of one key source (``name`` is its cache namespace)."""

    name: str
    per_minute: int
    unknown_seconds: int

    def _key(self, *parts):
        # kids come from unverified tokens: hashed, so nothing a cache key must not hold reaches the cache.
        digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode("utf-8", "replace")).hexdigest()
        return f"keyfetch:{self.name}:{digest}"

    def known_unknown(self, kid):
        """True when the service said, less than ``unknown_seconds`` ago, that it has no key ``kid``."""
        return cache.get(self._key("unknown", kid)) is not None

    def remember_unknown(self, kid):
        """Answer ``kid`` "unknown" without a fetch for ``unknown_seconds``."""
        cache.set(self._key("unknown", kid), 1, self.unknown_seconds)

    def forget_unknown(self, kid):
        """A key for ``kid`` has appeared after all (a key set that now lists it)."""
        cache.delete(self._key("unknown", kid))

    def take(self):
        """Claim one fetch of the budget; ``FetchThrottled`` when ``per_minute`` fetches were made in the
        last 60 seconds.

        The budget is ``per_minute`` slots in the cache, each taken with the atomic ``cache.add`` and held
        for 60 seconds: in any 60-second span at most ``per_minute`` fetches go out, across every process
        sharing the cache (a sliding bound, not a clock-minute window that allows twice as many at its
        edge).
        """
        for slot in range(self.per_minute):
            if cache.add(self._key("slot", slot), 1, 60):
                return
        logger.warning("key fetch budget spent source=%s per_minute=%s", self.name, self.per_minute)
        raise FetchThrottled(f"{self.name}: at most {self.per_minute} key fetches a minute")

    def lookup(self, kid, *, cached, fetch):
        """The key for ``kid``: ``cached(kid)`` if it has it, else one budgeted ``fetch(kid)``.

        ``cached`` and ``fetch`` return the key or ``None``; a ``None`` from ``fetch`` (the service does
        not know the ``kid``) is remembered. Raises ``FetchThrottled`` or ``KeyServiceUnavailable``.
        """
        key = cached(kid)
        if key is not None:
            return key
        if self.known_unknown(kid):
            return None
        self.take()
        key = fetch(kid)
        if key is None:
            self.remember_unknown(kid)
        return key


@dataclass(frozen=True)
class Answer:
    """A key service's answer that is not an outage: its status and (for a 200) the body."""

    status: int
    body: bytes


def get(url, *, timeout, max_bytes, verify=True, accept=None):
    """GET ``url`` once: 200 and other 4xx are answers; network errors, 429, 5xx or an oversized body
    raise ``KeyServiceUnavailable``. Redirects are not followed (a key must come from where it is asked)."""
    headers = {"Accept": accept} if accept else {}
    try:
        with requests.get(
            url, timeout=timeout, stream=True, verify=verify, allow_redirects=False, headers=headers
        ) as response:
            status = response.status_code
            if status == 429 or status >= 500:
                raise KeyServiceUnavailable(f"key service answered {status}")
            if status != 200:
                return Answer(status=status, body=b"")
            body = response.raw.read(max_bytes + 1, decode_content=True)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise KeyServiceUnavailable(f"key service unreachable: {type(exc).__name__}") from None
    if len(body) > max_bytes:
        raise KeyServiceUnavailable("key service sent an oversized answer")
    return Answer(status=200, body=body)
