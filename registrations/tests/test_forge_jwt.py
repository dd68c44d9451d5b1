"""Forge invocation tokens verified against a real https JWKS server on loopback (issue 17, items 1, 6)."""

from datetime import UTC, datetime

import jwt as pyjwt
import pytest
import time_machine
from cryptography.hazmat.primitives import serialization

from registrations import forge_jwt
from registrations.tests.forge_fixtures import ACCOUNT, APP_ID, CLOUD_ID, UNCONFIGURED_APP_ID, fit

NOON = datetime(2026, 12, 1, 12, 0, 5, tzinfo=UTC)


def refused(token):
    with pytest.raises(forge_jwt.ForgeAuthError) as info:
        forge_jwt.verify_token(token)
    return info.value.code


def test_a_valid_token_names_app_installation_site_and_account(forge_jwks):
    context = forge_jwt.verify_token(fit(forge_jwks))
    assert context.app_id == APP_ID
    assert context.installation_id == "ari:cloud:ecosystem::installation/inst-1"
    assert (context.cloud_id, context.site_url) == (CLOUD_ID, "https://acme.atlassian.net")
    assert context.account_id == ACCOUNT
    assert context.environment_type == "PRODUCTION"


def test_the_key_set_is_fetched_once_and_cached_by_kid(forge_jwks):
    for _ in range(5):
        forge_jwt.verify_token(fit(forge_jwks))
    assert forge_jwks.hits == 1


def test_wrong_audience_is_refused(forge_jwks):
    assert refused(fit(forge_jwks, aud="https://privacy.example.test")) == "aud"


def test_wrong_issuer_is_refused(forge_jwks):
    assert refused(fit(forge_jwks, iss="someone-else")) == "iss"


def test_an_app_id_that_is_not_configured_is_refused(forge_jwks):
    assert refused(fit(forge_jwks, app_id=UNCONFIGURED_APP_ID)) == "app-not-configured"


def test_no_configured_app_refuses_every_token(forge_jwks, settings):
    settings.FORGE_APP_IDS = []
    assert refused(fit(forge_jwks)) == "app-not-configured"


def test_expired_token_is_refused_beyond_the_leeway(forge_jwks, settings):
    settings.CONNECT_JWT_LEEWAY = 30
    now = int(datetime.now(UTC).timestamp())
    assert refused(fit(forge_jwks, iat=now - 400, exp=now - 31)) == "expired"
    assert forge_jwt.verify_token(fit(forge_jwks, iat=now - 400, exp=now - 20)).app_id == APP_ID


def test_nbf_in_the_future_is_refused(forge_jwks):
    now = int(datetime.now(UTC).timestamp())
    assert refused(fit(forge_jwks, nbf=now + 120)) == "not-yet-valid"


@pytest.mark.parametrize("claim", ["iat", "nbf", "exp"])
def test_missing_time_claim_is_refused(forge_jwks, claim):
    assert refused(fit(forge_jwks, **{claim: ...})) == "claims"


def test_alg_none_is_refused(forge_jwks):
    token = pyjwt.encode(
        {"iss": "forge/invocation-token"}, None, algorithm="none", headers={"kid": "forge-key-1"}
    )
    assert refused(token) == "algorithm"


def test_hs256_signed_with_the_public_key_is_refused(forge_jwks):
    """The classic confusion attack: the RSA public key (public, from the JWKS) used as an HMAC secret."""
    public_pem = (
        forge_jwks.keys["forge-key-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "kid": "forge-key-1", "typ": "JWT"}
    signing_input = ".".join(
        pyjwt.utils.base64url_encode(pyjwt.api_jws.json.dumps(part).encode()).decode()
        for part in (header, {"iss": "forge/invocation-token"})
    )
    import hashlib
    import hmac

    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{pyjwt.utils.base64url_encode(signature).decode()}"
    assert refused(token) == "algorithm"
    assert forge_jwks.hits == 0


def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(forge_jwks):
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert refused(fit(forge_jwks, key=other)) == "signature"


def test_unknown_kid_fetches_once_then_not_again_for_a_minute(forge_jwks):
    """A stream of forged kids against the real JWKS server: one refresh, then none for a minute."""
    with time_machine.travel(NOON, tick=False) as clock:
        forge_jwt.verify_token(fit(forge_jwks))  # the first fetch, at start
        clock.shift(61)
        other = forge_jwks.add("unpublished")
        del forge_jwks.keys["unpublished"]
        for i in range(100):
            assert refused(fit(forge_jwks, kid=f"forged-{i}", key=other)) == "kid"
        assert forge_jwks.hits == 2  # the start, and one refresh for the first forged kid
        clock.shift(59)
        assert refused(fit(forge_jwks, kid="forged-x", key=other)) == "kid"
        assert forge_jwks.hits == 2
        clock.shift(2)  # a new clock minute: one more refresh is allowed
        assert refused(fit(forge_jwks, kid="forged-y", key=other)) == "kid"
        assert forge_jwks.hits == 3


def test_key_rotation_a_new_kid_in_the_jwks_is_accepted(forge_jwks):
    with time_machine.travel(NOON, tick=False) as clock:
        forge_jwt.verify_token(fit(forge_jwks))
        forge_jwks.add("forge-key-2")
        clock.shift(60)
        assert forge_jwt.verify_token(fit(forge_jwks, kid="forge-key-2")).app_id == APP_ID
        assert forge_jwt.verify_token(fit(forge_jwks)).app_id == APP_ID  # the old key still listed
    assert forge_jwks.hits == 2


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_jwks_errors_are_unavailable_not_a_bad_token(forge_jwks, status):
    forge_jwks.status = status
    with pytest.raises(forge_jwt.forge_keys.KeyServiceUnavailable):
        forge_jwt.verify_token(fit(forge_jwks))


def test_a_stale_key_set_is_used_while_the_jwks_is_down(forge_jwks, settings):
    with time_machine.travel(NOON, tick=False) as clock:
        forge_jwt.verify_token(fit(forge_jwks))
        forge_jwks.status = 503
        clock.shift(settings.FORGE_JWKS_MAX_AGE_SECONDS + 60)
        assert forge_jwt.verify_token(fit(forge_jwks)).app_id == APP_ID
    assert forge_jwks.hits == 2


def test_the_jwks_certificate_is_verified(forge_jwks, settings):
    """Without the test CA bundle the self-signed server is not trusted: verification is on."""
    settings.FORGE_JWKS_CA_BUNDLE = ""
    with pytest.raises(forge_jwt.forge_keys.KeyServiceUnavailable):
        forge_jwt.verify_token(fit(forge_jwks))


@pytest.mark.parametrize(
    "claims",
    [
        {"app": ...},
        {"context": ...},
        {"context": {"siteUrl": "https://acme.atlassian.net"}},
        {"principal": "not an account id"},
        {"app": {"installationId": "x y"}},
    ],
)
def test_unusable_claims_are_refused(forge_jwks, claims):
    assert refused(fit(forge_jwks, **claims)) == "claims"


def test_a_site_url_with_user_info_or_port_is_not_kept(forge_jwks):
    for url in (
        "https://evil@acme.atlassian.net",
        "https://acme.atlassian.net:8443",
        "http://acme.atlassian.net",
    ):
        assert (
            forge_jwt.verify_token(fit(forge_jwks, context={"cloudId": CLOUD_ID, "siteUrl": url})).site_url
            == ""
        )
