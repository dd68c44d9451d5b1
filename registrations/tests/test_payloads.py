"""Lifecycle body validation: every kept field checked; anything else is a PayloadError, never a crash."""

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registrations import payloads
from registrations.tests.conftest import APP_KEY


def body(**fields):
    data = {
        "key": APP_KEY,
        "clientKey": "ck",
        "sharedSecret": "s" * 32,
        "baseUrl": "https://acme.atlassian.net/wiki",
        "productType": "confluence",
        "eventType": "installed",
    }
    data.update(fields)
    return json.dumps(data).encode()


def test_minimal_install_body_is_accepted_with_optional_fields_empty(connect_settings):
    parsed = payloads.parse(body(), event="installed")
    assert parsed.client_key == "ck" and parsed.base_url == "https://acme.atlassian.net/wiki"
    assert parsed.display_url == "" and parsed.oauth_client_id == ""


def test_payload_repr_never_shows_the_secret(connect_settings):
    assert "s" * 32 not in repr(payloads.parse(body(), event="installed"))


def test_other_events_need_only_key_client_key_and_event_type(connect_settings):
    raw = json.dumps({"key": APP_KEY, "clientKey": "ck", "eventType": "disabled"}).encode()
    assert payloads.parse(raw, event="disabled").client_key == "ck"


def test_unknown_fields_are_ignored(connect_settings):
    assert payloads.parse(body(entitlementId=[1, 2], cloudId={"x": 1}), event="installed").client_key == "ck"


def test_a_cloud_id_is_kept_when_it_looks_like_one():
    assert payloads.parse(
        body(cloudId="a1b2c3d4-0000-4000-8000-00000000c10d"), event="installed"
    ).cloud_id == ("a1b2c3d4-0000-4000-8000-00000000c10d")
    assert payloads.parse(body(cloudId="x y\n"), event="installed").cloud_id == ""


@pytest.mark.parametrize("value", ["https://user:pw@/", "https://", "https://acme.atlassian.net/wiki\n"])
def test_malformed_base_urls_are_refused(connect_settings, value):
    with pytest.raises(payloads.PayloadError):
        payloads.parse(body(baseUrl=value), event="installed")


def test_lone_surrogates_are_refused(connect_settings):
    with pytest.raises(payloads.PayloadError, match="clientKey"):
        payloads.parse(body(clientKey="\ud800"), event="installed")


def test_deeply_nested_json_is_refused_not_crashed(connect_settings):
    with pytest.raises(payloads.PayloadError):
        payloads.parse(b"[" * 100_000 + b"]" * 100_000, event="installed")


# Text includes lone surrogates: JSON can carry them, and no database or log accepts them.
any_text = st.text(st.characters() | st.characters(categories=["Cs"]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(raw=st.binary(max_size=500))
def test_arbitrary_bytes_parse_or_raise_payload_error(raw):
    with contextlib.suppress(payloads.PayloadError):
        payloads.parse(raw, event="installed")


@given(
    fields=st.dictionaries(
        st.sampled_from(
            ["key", "clientKey", "sharedSecret", "baseUrl", "displayUrl", "productType", "description"]
        ),
        json_values,
    ),
    event=st.sampled_from(["installed", "uninstalled", "enabled", "disabled"]),
)
def test_arbitrary_field_values_parse_or_raise_payload_error(fields, event):
    try:
        parsed = payloads.parse(body(eventType=event, **fields), event=event)
    except payloads.PayloadError:
        return
    assert "\x00" not in parsed.client_key and len(parsed.client_key) <= 255
