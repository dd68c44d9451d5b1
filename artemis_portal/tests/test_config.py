"""Validation of environment values: every failure is a ConfigError naming the variable."""

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from artemis_portal.config import (
    ConfigError,
    check_base_url,
    check_database_url,
    parse_key_list,
    require,
)


def test_require_returns_value_when_set():
    assert require("SECRET_KEY", "abc", debug=False) == "abc"


def test_require_uses_development_default_only_in_debug():
    assert require("SECRET_KEY", "", debug=True, dev_default="dev") == "dev"
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        require("SECRET_KEY", "", debug=False, dev_default="dev")


@pytest.mark.parametrize("url", ["sqlite:///db.sqlite3", "postgres://u@h/db", "postgresql://h/db"])
def test_supported_database_urls_are_accepted(url):
    assert check_database_url(url) == url


@pytest.mark.parametrize("url", ["mysql://h/db", "redis://h", "nonsense", ""])
def test_unsupported_database_url_names_the_variable(url):
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        check_database_url(url)


def test_key_list_keeps_order_first_key_encrypts():
    a, b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    assert parse_key_list("FERNET_KEYS", f"{a}, {b}") == [a, b]


@pytest.mark.parametrize("raw", ["", ",", "short", "x" * 40 + ",", "x" * 40 + "," + "x" * 40])
def test_malformed_key_list_names_the_variable(raw):
    with pytest.raises(ConfigError, match="FERNET_KEYS"):
        parse_key_list("FERNET_KEYS", raw)


def test_key_list_without_hkdf_needs_real_fernet_keys():
    with pytest.raises(ConfigError, match="not a valid Fernet key"):
        parse_key_list("FERNET_KEYS", "y" * 44, use_hkdf=False)


@given(st.text())
def test_key_list_parser_only_ever_returns_keys_or_raises_config_error(raw):
    try:
        keys = parse_key_list("FERNET_KEYS", raw)
    except ConfigError:
        return
    assert keys and all(len(k) >= 32 for k in keys)


def test_base_url_loses_trailing_slash():
    assert check_base_url("APP_BASE_URL", "https://x.example.com/", debug=False) == "https://x.example.com"


@pytest.mark.parametrize("url", ["http://x.example.com", "ftp://x", "x.example.com", "https://x.com/?a=1"])
def test_production_base_url_must_be_plain_https(url):
    with pytest.raises(ConfigError, match="APP_BASE_URL"):
        check_base_url("APP_BASE_URL", url, debug=False)
