"""Keys derived from the settings: one per purpose, from DSR_BLIND_INDEX_KEY or else SECRET_KEY."""

import hashlib
import hmac

from artemis_portal.keys import derived_key


def test_the_key_comes_from_the_blind_index_key_or_else_the_secret_key(settings):
    settings.SECRET_KEY = "s" * 50
    settings.DSR_BLIND_INDEX_KEY = ""
    from_secret = derived_key("purpose")
    assert from_secret == hmac.new(b"s" * 50, b"purpose", hashlib.sha256).digest()
    settings.DSR_BLIND_INDEX_KEY = "b" * 40
    assert derived_key("purpose") == hmac.new(b"b" * 40, b"purpose", hashlib.sha256).digest()
    assert derived_key("purpose") != derived_key("other purpose")
