"""Atlassian's signed-install public keys, fetched by ``kid`` and cached.

A ``kid`` names one key for good (Atlassian rotates by issuing a new ``kid``), so a fetched key is cached
for a day and a rotation never waits for the cache. The service being down, slow or answering 5xx is
``KeyServiceUnavailable`` (the lifecycle view answers 503 and Atlassian retries the install); only a 404
(or other 4xx) means the ``kid`` is unknown, which is the token's fault (401).
"""

import hashlib
import logging
import re
from urllib.parse import quote

import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger("artemis.connect")

KID = re.compile(r"[A-Za-z0-9._:-]{1,200}")
CACHE_SECONDS = 24 * 60 * 60
MAX_KEY_BYTES = 16 * 1024


class KeyServiceUnavailable(Exception):
    """The install-key service could not answer; the caller should answer 503 so the call is retried."""


def valid_kid(kid):
    """A ``kid`` we are willing to put into a URL path: plain token characters, never ``.`` or ``..``."""
    return bool(KID.fullmatch(kid)) and kid not in {".", ".."}


def _cache_key(kid):
    return "connect:install-key:" + hashlib.sha256(kid.encode()).hexdigest()


def public_key(kid):
    """The PEM public key for ``kid``, or ``None`` if the service says it does not exist."""
    key = _cache_key(kid)
    pem = cache.get(key)
    if pem is None:
        pem = _fetch(kid)
        if pem is not None:
            cache.set(key, pem, CACHE_SECONDS)
    return pem


def _fetch(kid):
    """GET ``<CONNECT_INSTALL_KEYS_URL>/<kid>`` with a timeout, a status check and a size limit."""
    url = f"{settings.CONNECT_INSTALL_KEYS_URL}/{quote(kid, safe='')}"
    try:
        with requests.get(url, timeout=settings.CONNECT_INSTALL_KEYS_TIMEOUT, stream=True) as response:
            if response.status_code == 429 or response.status_code >= 500:
                raise KeyServiceUnavailable(f"install-key service answered {response.status_code}")
            if response.status_code != 200:
                logger.warning("connect install key unknown kid=%s status=%s", kid, response.status_code)
                return None
            body = response.raw.read(MAX_KEY_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise KeyServiceUnavailable(f"install-key service unreachable: {type(exc).__name__}") from None
    if len(body) > MAX_KEY_BYTES:
        raise KeyServiceUnavailable("install-key service sent an oversized key")
    try:
        loaded = load_pem_public_key(body)
    except (ValueError, TypeError):
        raise KeyServiceUnavailable("install-key service sent something that is not a PEM key") from None
    if not isinstance(loaded, RSAPublicKey):
        raise KeyServiceUnavailable("install-key service sent a key that is not RSA")
    return body.decode("ascii")
