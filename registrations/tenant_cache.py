"""Tenant records by client key, from the Django cache when warm: zero queries per authenticated request.

The cache holds the registration's column values with the shared secret still Fernet-encrypted (so a
shared Redis never sees it in plain text); a miss costs one indexed query. Unknown client keys are cached
briefly too, so a stream of forged tokens cannot turn into a stream of queries.

Two races are closed here rather than left to the entry's lifetime:

- A request that read the row just before a lifecycle change must not put the old state back into the
  cache after the change dropped it (a disabled or uninstalled site would keep authenticating for up to
  ``CONNECT_TENANT_CACHE_SECONDS``). ``forget`` therefore leaves a short-lived *tombstone* instead of an
  empty slot, and lookups fill the cache only with ``cache.add``, which never replaces an entry: while the
  tombstone lives (longer than any request), lookups read the database and fill nothing.
- An entry written by an older release lists that release's columns; read by a newer one after a
  migration it would build a wrong object (or fail). Each entry carries a tag of the column list, and an
  entry with another tag counts as a miss.

With several processes ``CACHE_URL`` must be a shared cache (Redis): the tombstone must reach every one.

In front of the shared cache each process keeps what it read for ``CONNECT_TENANT_LOCAL_SECONDS`` (2 s by
default, 0 turns it off): a Redis round trip costs more than verifying the token itself, and a page load
or an API burst from one site asks for the same tenant many times a second. ``forget`` clears this
process's copy at once; other processes see a change within those seconds. Only enabled, unblocked tenants
are kept locally, so a site that is already refused stays refused everywhere.

Both per-process tables are bounded LRUs (``CONNECT_TENANT_LOCAL_MAX_ENTRIES`` each, 10,000 by default,
about 1.5 KB per tenant and a few hundred bytes per missing key): with many tenants the least recently
used copy makes room, so memory stays flat however many sites call. The second table remembers client
keys that do not exist, for the same few seconds; the shared cache remembers them as long as a tenant
(``CONNECT_TENANT_CACHE_SECONDS``). A stream of tokens with forged issuers then costs one query per key
per 5 minutes and at most one Redis read per key per process every ``CONNECT_TENANT_LOCAL_SECONDS``,
and evicts no real tenant's copy. A key that does not exist yet when
looked up and is installed a moment later is refused by other processes for at most those seconds
(installing clears this process's entry at once), the same delay as any other change.
"""

import hashlib
import time
from collections import OrderedDict

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from registrations.models import Registration

MISSING = "missing"
TOMBSTONE = "forgotten"
# Longer than any request can take (gunicorn's timeout is 30 s), so no read from before a change outlives it.
TOMBSTONE_SECONDS = 120
_ATTNAMES = tuple(f.attname for f in Registration._meta.concrete_fields)
_COLUMNS_TAG = hashlib.sha256(",".join(_ATTNAMES).encode()).hexdigest()[:16]
_SECRET_INDEX = _ATTNAMES.index("shared_secret")
_SECRET_FIELD = Registration._meta.get_field("shared_secret")


# client key -> (time stored, column values with the secret in plain text); this process only, least
# recently used first. Wall-clock time (which tests can freeze) read as an age that must lie in
# [0, CONNECT_TENANT_LOCAL_SECONDS): a clock step backwards or forwards ends the copy early, never makes it
# live longer.
_local = OrderedDict()
# client key -> time stored: keys neither the shared cache nor the database knows; same order and rule.
_missing = OrderedDict()


def _fresh(stored_at, now):
    """Whether a copy stored at ``stored_at`` may still be used at ``now`` (see ``_local``)."""
    return 0 <= now - stored_at < settings.CONNECT_TENANT_LOCAL_SECONDS


def _key(client_key):
    # Hashed: client keys come from unverified tokens and may hold anything a cache key must not.
    return "connect:tenant:" + hashlib.sha256(client_key.encode("utf-8", "replace")).hexdigest()


@sensitive_variables("values", "entry")
def _from_entry(entry):
    """The registration in a cached entry, or ``None`` when the entry cannot be used."""
    if not (isinstance(entry, tuple) and len(entry) == 2 and entry[0] == _COLUMNS_TAG):
        return None
    values = list(entry[1])
    try:
        values[_SECRET_INDEX] = _SECRET_FIELD.fernet.decrypt(values[_SECRET_INDEX]).decode()
    except InvalidToken:
        # Cached under a key since removed from FERNET_KEYS: read the row again.
        return None
    return Registration.from_db("default", _ATTNAMES, values)


@sensitive_variables("values", "entry", "tenant", "local")
def get(client_key):
    """The registration for ``client_key`` in any state, or ``None``; cached."""
    now = time.time()
    local = _local.get(client_key)
    if local is not None and _fresh(local[0], now):
        _local.move_to_end(client_key)
        return Registration.from_db("default", _ATTNAMES, local[1])
    missing_since = _missing.get(client_key)
    if missing_since is not None and _fresh(missing_since, now):
        return None
    key = _key(client_key)
    entry = cache.get(key)
    if entry == MISSING:
        _remember_missing(client_key)
        return None
    cached = _from_entry(entry) if entry is not None else None
    if cached is not None:
        _keep_locally(cached)
        return cached
    tenant = Registration.objects.filter(client_key=client_key).first()
    if tenant is None:
        # As long as a tenant's entry: installing the key tombstones it (and ``add`` never replaces a
        # tombstone), so remembering a miss for long cannot hide a new site.
        cache.add(key, MISSING, settings.CONNECT_TENANT_CACHE_SECONDS)
        if entry is None:  # not after a tombstone: an install may be about to commit
            _remember_missing(client_key)
        return None
    values = [getattr(tenant, name) for name in _ATTNAMES]
    values[_SECRET_INDEX] = _SECRET_FIELD.fernet.encrypt(tenant.shared_secret.encode())
    # ``add`` leaves a tombstone, or an entry this release cannot use (it expires on its own), in place.
    cache.add(key, (_COLUMNS_TAG, tuple(values)), settings.CONNECT_TENANT_CACHE_SECONDS)
    if entry is None:  # not after a tombstone: the row may be about to change again
        _keep_locally(tenant)
    return tenant


def exists(client_key):
    """Whether ``client_key`` names a tenant in any state: ``get`` without building the object when this
    process holds a fresh copy (the early refusal asks first, the view's check builds it right after)."""
    local = _local.get(client_key)
    if local is not None and _fresh(local[0], time.time()):
        return True
    return get(client_key) is not None


@sensitive_variables("tenant")
def _keep_locally(tenant):
    seconds = settings.CONNECT_TENANT_LOCAL_SECONDS
    if seconds <= 0 or tenant.state != Registration.State.ENABLED or tenant.blocked_at is not None:
        return
    _missing.pop(tenant.client_key, None)
    _bounded_put(_local, tenant.client_key, (time.time(), [getattr(tenant, n) for n in _ATTNAMES]))


def _remember_missing(client_key):
    seconds = settings.CONNECT_TENANT_LOCAL_SECONDS
    if seconds > 0:
        _bounded_put(_missing, client_key, time.time())


def _bounded_put(table, client_key, value):
    """Insert as most recently used; drop the least recently used beyond the configured cap."""
    table[client_key] = value
    table.move_to_end(client_key)
    while len(table) > settings.CONNECT_TENANT_LOCAL_MAX_ENTRIES:
        table.popitem(last=False)


def forget(client_key):
    """Tombstone the cached record now and once more when the surrounding transaction commits."""
    key = _key(client_key)
    _local.pop(client_key, None)
    _missing.pop(client_key, None)
    cache.set(key, TOMBSTONE, TOMBSTONE_SECONDS)

    def again():
        _local.pop(client_key, None)
        _missing.pop(client_key, None)
        cache.set(key, TOMBSTONE, TOMBSTONE_SECONDS)

    transaction.on_commit(again)


def clear_local():
    """Forget this process's copies (tests that change rows behind the services' back use it)."""
    _local.clear()
    _missing.clear()
