"""Keys derived from the settings for keyed hashes (HMAC), one per purpose.

The bottom layer holds this so that every app derives its hash keys the same way without importing a
higher app: rights requests (blind index, codes) and the Connect side's erasure ledger share it.
"""

import hashlib
import hmac

from django.conf import settings


def derived_key(label):
    """A 32-byte key for the purpose ``label``: from ``DSR_BLIND_INDEX_KEY`` if set, else ``SECRET_KEY``.

    Deriving per purpose keeps one hash from being usable as another; the separate setting lets
    production rotate ``SECRET_KEY`` without losing what was hashed under it (the blind index, the
    erasure ledger).
    """
    root = settings.DSR_BLIND_INDEX_KEY or settings.SECRET_KEY
    return hmac.new(root.encode(), label.encode(), hashlib.sha256).digest()
