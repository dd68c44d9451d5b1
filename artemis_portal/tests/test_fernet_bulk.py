"""Bulk Fernet decryption gives exactly what ``cryptography.fernet`` gives, and refuses what it refuses."""

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from hypothesis import given, settings
from hypothesis import strategies as st

from artemis_portal.fernet_bulk import BulkDecryptor

KEYS = [Fernet.generate_key() for _ in range(3)]
MULTI = MultiFernet([Fernet(key) for key in KEYS])


@settings(max_examples=60)
@given(
    messages=st.lists(
        st.tuples(st.binary(max_size=120), st.integers(min_value=0, max_value=2)) | st.none(), max_size=40
    )
)
def test_bulk_decryption_equals_multifernet_for_any_messages_and_keys(messages):
    tokens = [None if item is None else Fernet(KEYS[item[1]]).encrypt(item[0]) for item in messages]
    expected = [None if token is None else MULTI.decrypt(token) for token in tokens]
    assert BulkDecryptor(KEYS).decrypt_many(tokens) == expected
    # The database hands bytea columns back as memoryview on PostgreSQL.
    assert BulkDecryptor(KEYS).decrypt_many([t if t is None else memoryview(t) for t in tokens]) == expected
    # The export reads them as text there (dsr_requests.export_records.TokenText).
    assert BulkDecryptor(KEYS).decrypt_many([t if t is None else t.decode() for t in tokens]) == expected


@settings(max_examples=60)
@given(message=st.binary(max_size=64), position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_a_token_with_any_bit_flipped_is_refused_like_fernet_refuses_it(message, position, bit):
    good = Fernet(KEYS[0]).encrypt(b"fine")
    raw = bytearray(Fernet(KEYS[1]).encrypt(message))
    raw[position % len(raw)] ^= 1 << bit
    tampered = bytes(raw)
    try:
        MULTI.decrypt(tampered)
    except InvalidToken:
        with pytest.raises(InvalidToken):
            BulkDecryptor(KEYS).decrypt_many([good, tampered])
    else:  # a flip base64 decoding ignores (a padding bit): both accept it, with the same plain text
        assert BulkDecryptor(KEYS).decrypt_many([good, tampered]) == [b"fine", MULTI.decrypt(tampered)]


@pytest.mark.parametrize(
    "token",
    [b"", b"not base64 !!", b"gAAAAA", Fernet(Fernet.generate_key()).encrypt(b"another key")],
)
def test_garbage_short_tokens_and_unknown_keys_are_refused(token):
    with pytest.raises(InvalidToken):
        BulkDecryptor(KEYS).decrypt_many([token])
    with pytest.raises(InvalidToken):
        MULTI.decrypt(token)


def test_a_decryptor_needs_a_key():
    with pytest.raises(ValueError):
        BulkDecryptor([])


@pytest.mark.parametrize("token", ["gAAAAAé", Fernet(KEYS[0]).encrypt(b"x").decode() + "\u00ff"])
def test_a_text_token_that_is_not_ascii_is_refused(token):
    with pytest.raises(InvalidToken):
        BulkDecryptor(KEYS).decrypt_many([Fernet(KEYS[0]).encrypt(b"fine").decode(), token])
