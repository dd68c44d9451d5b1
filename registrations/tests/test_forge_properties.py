"""Property tests: no input makes the FIT parser or the two Forge endpoints fail with anything but a
clear answer (401/400/403/429/503 or a ``ForgeAuthError``), never a 500 (issue 17; standards)."""

import json

import jwt as pyjwt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jwt.utils import base64url_encode

from registrations import forge_jwt
from registrations.tests.forge_fixtures import APP_ID, fit

pytestmark = pytest.mark.django_db
FIXTURES = hypothesis_settings(
    max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Claim values that are sometimes right, sometimes of the wrong type or shape.
claim_overrides = st.dictionaries(
    st.sampled_from(["iss", "aud", "iat", "nbf", "exp", "app", "context", "principal", "jti"]),
    json_values
    | st.just(...)
    | st.sampled_from(
        [
            f"ari:cloud:ecosystem::app/{APP_ID}",
            {"installationId": "ari:cloud:ecosystem::installation/x", "id": 5},
            {"cloudId": "c", "siteUrl": "https://a@b:1/"},
            {"cloudId": ["c"], "siteUrl": None},
            2**70,
            -1,
            1e308,
        ]
    ),
    max_size=4,
)


def _b64(value):
    return base64url_encode(json.dumps(value).encode()).decode()


@FIXTURES
@given(header=json_values, claims=json_values, signature=st.binary(max_size=40))
def test_any_unsigned_token_is_a_forge_auth_error(forge_jwks, header, claims, signature):
    token = f"{_b64(header)}.{_b64(claims)}.{base64url_encode(signature).decode()}"
    with pytest.raises((forge_jwt.ForgeAuthError, forge_jwt.forge_keys.KeyServiceUnavailable)):
        forge_jwt.verify_token(token)


@FIXTURES
@given(text=st.text(max_size=300))
def test_any_text_is_a_forge_auth_error(forge_jwks, text):
    with pytest.raises(forge_jwt.ForgeAuthError):
        forge_jwt.verify_token(text)


@FIXTURES
@given(overrides=claim_overrides)
def test_any_claims_signed_with_the_real_key_verify_or_are_refused_cleanly(forge_jwks, overrides):
    try:
        token = fit(forge_jwks, **overrides)
    except (TypeError, ValueError, OverflowError):
        return  # PyJWT cannot even encode these claims
    try:
        context = forge_jwt.verify_token(token)
    except forge_jwt.ForgeAuthError as error:
        assert error.code and error.message
    else:
        assert context.app_id == APP_ID and context.installation_id


endpoint_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b'{"eventType": "avi:forge:installed:app"}', b'{"code": "ABCD-1234"}']),
)


@FIXTURES
@given(
    path=st.sampled_from(["/forge/events/", "/forge/identity-proof/"]),
    body=endpoint_bodies,
    overrides=claim_overrides,
    module_key=st.sampled_from(["lifecycle-events", "other"]),
    scheme=st.sampled_from(["Bearer", "bearer", "JWT", ""]),
)
def test_the_forge_endpoints_never_answer_500(client, forge_jwks, path, body, overrides, module_key, scheme):
    try:
        token = fit(forge_jwks, module_key=module_key, **overrides)
    except (TypeError, ValueError, OverflowError):
        token = "x.y.z"
    response = client.post(
        path, body, content_type="application/json", HTTP_AUTHORIZATION=f"{scheme} {token}".strip()
    )
    assert response.status_code in (200, 204, 400, 401, 403, 429, 503)


@FIXTURES
@given(token=st.text(max_size=100), path=st.sampled_from(["/forge/events/", "/forge/identity-proof/"]))
def test_garbage_authorization_headers_are_401(client, forge_jwks, token, path):
    header = "Bearer " + token.replace("\x00", "")
    response = client.post(path, b"{}", content_type="application/json", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


def test_pyjwt_is_the_encoder_of_the_fixture_tokens(forge_jwks):
    """The property tests sign with PyJWT directly, independent of the code under test."""
    assert pyjwt.get_unverified_header(fit(forge_jwks))["kid"] == "forge-key-1"
