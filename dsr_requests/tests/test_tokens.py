"""Keyed hashes, tokens and codes of rights requests."""

import contextlib
import hashlib

import pytest
from django.core import signing
from hypothesis import given
from hypothesis import strategies as st

from dsr_requests import tokens
from dsr_requests.tests.factories import RightsRequestFactory


def test_blind_index_ignores_case_and_surrounding_space():
    assert tokens.email_blind_index(" Ada@Example.org ") == tokens.email_blind_index("ada@example.org")


def test_blind_index_depends_on_the_configured_key(settings):
    before = tokens.email_blind_index("ada@example.org")
    settings.DSR_BLIND_INDEX_KEY = "another-key-of-at-least-thirty-two-characters"
    assert tokens.email_blind_index("ada@example.org") != before


def test_blind_index_is_not_a_plain_hash_of_the_email():
    assert tokens.email_blind_index("ada@example.org") != hashlib.sha256(b"ada@example.org").hexdigest()


def test_references_are_short_random_and_readable():
    references = {tokens.new_reference() for _ in range(200)}
    assert len(references) == 200
    assert all(ref.startswith("DSR-") and len(ref) == 10 for ref in references)
    assert not any(ch in ref[4:] for ref in references for ch in "01OIL")


def test_status_token_has_at_least_128_bits_and_only_its_hash_is_returned_for_storage():
    token, digest = tokens.new_status_token()
    assert len(token) * 4 >= 128
    assert digest == tokens.status_token_hash(token) and token not in digest


def test_account_code_hash_ignores_case_spaces_and_dashes():
    code, digest = tokens.new_account_code()
    typed = f" {code[:4].lower()}-{code[4:]} "
    assert tokens.account_code_hash(typed) == digest


@pytest.mark.django_db
def test_confirmation_token_round_trips_and_refuses_tampering():
    request = RightsRequestFactory()
    token = tokens.confirmation_token(request)
    assert tokens.read_confirmation_token(token, max_age=60) == request.reference
    with pytest.raises(signing.BadSignature):
        tokens.read_confirmation_token(token[:-2] + "xx", max_age=60)


@given(st.text(max_size=300))
def test_reading_any_string_as_a_confirmation_token_raises_only_bad_signature(text):
    with contextlib.suppress(signing.BadSignature):
        tokens.read_confirmation_token(text, max_age=60)


def test_the_email_blind_index_is_unchanged_by_the_shared_key_helper(settings):
    """Deriving the key in artemis_portal.keys must not change a stored hash (requests stay findable)."""
    import hmac

    settings.DSR_BLIND_INDEX_KEY = "b" * 40
    key = hmac.new(b"b" * 40, b"artemis.dsr.email-blind-index", hashlib.sha256).digest()
    expected = hmac.new(key, b"ada@example.org", hashlib.sha256).hexdigest()
    assert tokens.email_blind_index(" Ada@Example.org ") == expected
