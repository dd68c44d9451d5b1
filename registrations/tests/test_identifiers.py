"""Identifiers written to the log: only values that look like a client key or account ID."""

import pytest

from registrations.identifiers import log_value


@pytest.mark.parametrize("value", ["557058:0e50fccb-239d-4991-a5db-dc850ba3f236", "5b10ac8d82e05b22cc7d4ef5"])
def test_account_ids_and_client_keys_are_logged_as_they_are(value):
    assert log_value(value) == value


@pytest.mark.parametrize("value", ["a@b.example", "two words", "line\n", "", None, 42, "x" * 129])
def test_anything_else_is_logged_as_a_dash(value):
    assert log_value(value) == "-"
