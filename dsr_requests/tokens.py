"""Secrets and keyed hashes of rights requests: references, blind index, status tokens, codes, links.

Only hashes are stored: the email's blind index (keyed, so a stolen database cannot be matched against a
list of addresses), the status token's SHA-256 (128-bit random, so an unkeyed hash is enough), the account
proof code's keyed hash (short, so it needs the key). Confirmation links are signed with Django's signer.
"""

import hashlib
import hmac
import secrets

from django.core import signing

from artemis_portal import keys

# Crockford's base-32 without the look-alikes (0/O, 1/I/L, U): easy to read out on the phone.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
_CONFIRM_SALT = "dsr_requests.confirm-email"


def _derived_key(purpose):
    """A key for one purpose: DSR_BLIND_INDEX_KEY if set, else derived from SECRET_KEY and the purpose.

    Deriving per purpose keeps one hash from being usable as another; a separate setting lets production
    rotate SECRET_KEY without losing the ability to find a person's requests.
    """
    return keys.derived_key(f"artemis.dsr.{purpose}")


def new_reference():
    """A short human reference, e.g. ``DSR-7K3M9Q``: random, so it says nothing about the id or count."""
    return "DSR-" + "".join(secrets.choice(_ALPHABET) for _ in range(6))


def normalize_email(email):
    """The form of an address used for the blind index: trimmed and lower-cased."""
    return email.strip().lower()


def email_blind_index(email):
    """HMAC-SHA256 (hex) of the normalized email, to find a person's requests without decrypting."""
    return hmac.new(
        _derived_key("email-blind-index"), normalize_email(email).encode(), hashlib.sha256
    ).hexdigest()


def new_status_token():
    """A status-page token (256 random bits, hex) and the SHA-256 hex digest that is stored.

    Hex, not base64: one unbroken run of 64 characters is what the log filter masks, so the token never
    reaches a log line even though it is part of the URL path.
    """
    token = secrets.token_hex(32)
    return token, status_token_hash(token)


def status_token_hash(token):
    """SHA-256 hex digest of a status token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_account_code():
    """A one-time account proof code (8 characters, about 39 bits) and its keyed hash."""
    code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return code, account_code_hash(code)


def normalize_code(code):
    """Codes are typed by hand: ignore case, spaces and dashes."""
    return "".join(code.split()).replace("-", "").upper()


def account_code_hash(code):
    """HMAC-SHA256 (hex) of a normalized account proof code."""
    return hmac.new(_derived_key("account-code"), normalize_code(code).encode(), hashlib.sha256).hexdigest()


def confirmation_token(rights_request):
    """A signed, timestamped token naming the request, for the email confirmation link."""
    return signing.TimestampSigner(salt=_CONFIRM_SALT).sign_object({"r": rights_request.reference})


def read_confirmation_token(token, *, max_age):
    """The reference inside a confirmation token; raises ``signing.SignatureExpired``/``BadSignature``."""
    data = signing.TimestampSigner(salt=_CONFIRM_SALT).unsign_object(token, max_age=max_age)
    if not isinstance(data, dict) or not isinstance(data.get("r"), str):
        raise signing.BadSignature("malformed confirmation token")
    return data["r"]


def new_download_code():
    """A one-time export download code (8 characters, about 39 bits) and its keyed hash."""
    code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return code, download_code_hash(code)


def download_code_hash(code):
    """HMAC-SHA256 (hex) of a normalized download code; its own key, so it never matches an account code."""
    return hmac.new(_derived_key("download-code"), normalize_code(code).encode(), hashlib.sha256).hexdigest()
