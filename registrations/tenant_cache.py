"""Tenant records by client key, from the Django cache when warm: zero queries per authenticated request.

The cache holds the registration's column values with the shared secret still Fernet-encrypted (so a
shared Redis never sees it in plain text); a miss costs one indexed query. Unknown client keys are cached
briefly too, so a stream of forged tokens cannot turn into a stream of queries.

Every lifecycle change and the admin's disable call ``forget`` (at once and again after commit). A
request that read the row just before a change could still put the old state back until the entry
expires (``CONNECT_TENANT_CACHE_SECONDS``); with several processes ``CACHE_URL`` must be shared (Redis).
"""

import hashlib

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from registrations.models import Registration

MISSING = "missing"
MISSING_SECONDS = 30
_ATTNAMES = tuple(f.attname for f in Registration._meta.concrete_fields)
_SECRET_INDEX = _ATTNAMES.index("shared_secret")
_SECRET_FIELD = Registration._meta.get_field("shared_secret")


def _key(client_key):
    # Hashed: client keys come from unverified tokens and may hold anything a cache key must not.
    return "connect:tenant:" + hashlib.sha256(client_key.encode("utf-8", "replace")).hexdigest()


@sensitive_variables("values", "entry", "tenant")
def get(client_key):
    """The registration for ``client_key`` in any state, or ``None``; cached."""
    key = _key(client_key)
    entry = cache.get(key)
    if entry == MISSING:
        return None
    if entry is not None:
        values = list(entry)
        try:
            values[_SECRET_INDEX] = _SECRET_FIELD.fernet.decrypt(values[_SECRET_INDEX]).decode()
        except InvalidToken:
            # Cached under a key since removed from FERNET_KEYS: read the row again.
            values = None
        if values is not None:
            return Registration.from_db("default", _ATTNAMES, values)
    tenant = Registration.objects.filter(client_key=client_key).first()
    if tenant is None:
        cache.set(key, MISSING, MISSING_SECONDS)
        return None
    values = [getattr(tenant, name) for name in _ATTNAMES]
    values[_SECRET_INDEX] = _SECRET_FIELD.fernet.encrypt(tenant.shared_secret.encode())
    cache.set(key, tuple(values), settings.CONNECT_TENANT_CACHE_SECONDS)
    return tenant


def forget(client_key):
    """Drop the cached record now and once more when the surrounding transaction commits."""
    key = _key(client_key)
    cache.delete(key)
    transaction.on_commit(lambda: cache.delete(key))
