"""Validation of environment-driven settings.

Settings are read from the environment (12-factor). A wrong value must stop start-up with one line that
names the variable, not a traceback from deep inside a database driver or the Fernet library, so every
value that can be malformed goes through one of these functions, which raise ``ConfigError``.
"""

import uuid
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

SUPPORTED_DATABASE_SCHEMES = {"sqlite", "postgres", "postgresql", "pgsql", "psql"}
MIN_KEY_LENGTH = 32


class ConfigError(Exception):
    """A setting from the environment is missing or malformed; the message names the variable."""


def require(name, value, *, debug, dev_default=None):
    """Return ``value``; in development fall back to ``dev_default``, in production refuse to start."""
    if value:
        return value
    if debug and dev_default is not None:
        return dev_default
    raise ConfigError(f"{name} is not set; it is required when DEBUG is off (see .env.example).")


def check_database_url(url):
    """Refuse a ``DATABASE_URL`` whose scheme the portal does not support (SQLite and PostgreSQL)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SUPPORTED_DATABASE_SCHEMES:
        raise ConfigError(
            f"DATABASE_URL has an unsupported scheme {scheme!r}; use sqlite:/// or postgres://."
        )
    return url


def parse_key_list(name, raw, *, use_hkdf=True):
    """Parse a comma-separated key list (``FERNET_KEYS``, ``BACKUP_KEYS``): first key encrypts, all decrypt.

    With HKDF (the fernet_fields default) any long random string is a key, so we only insist on length,
    which rules out placeholders like ``changeme``. Without HKDF every entry must be a real Fernet key.
    """
    keys = [part.strip() for part in (raw or "").split(",")]
    if not raw or not all(keys):
        raise ConfigError(f"{name} must be a comma-separated list of keys with no empty entries.")
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{name} lists the same key twice.")
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(f"{name} key #{position} is too short (at least {MIN_KEY_LENGTH} characters).")
        if not use_hkdf:
            try:
                Fernet(key)
            except ValueError:
                raise ConfigError(f"{name} key #{position} is not a valid Fernet key.") from None
    return keys


def check_base_url(name, url, *, debug):
    """Return the base URL without a trailing slash; production needs https (Connect requires it)."""
    parts = urlsplit(url or "")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{name} must be an absolute http(s) URL, e.g. https://privacy.example.com.")
    if not debug and parts.scheme != "https":
        raise ConfigError(f"{name} must use https when DEBUG is off.")
    if parts.query or parts.fragment:
        raise ConfigError(f"{name} must not have a query string or fragment.")
    return url.rstrip("/")


def parse_uuid_list(name, raw):
    """A comma-separated list of UUIDs (Forge app IDs), lower-cased, in order, without repeats.

    Empty is allowed (no Forge app yet: every invocation token is refused); anything that is not a UUID
    stops start-up naming the variable, so a typo cannot silently refuse (or accept) the wrong app.
    """
    found = []
    for part in (raw or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = str(uuid.UUID(part))
        except ValueError:
            raise ConfigError(
                f"{name} must be a comma-separated list of app UUIDs; {part!r} is not one."
            ) from None
        if value not in found:
            found.append(value)
    return found
