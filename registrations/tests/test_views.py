"""Descriptor and lifecycle endpoints, end to end over the test client with a real key service."""

import hashlib
import hmac
import json
import secrets
import time
import uuid

import jwt as pyjwt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from jwt.utils import base64url_encode

from registrations import services
from registrations.models import ErasureLedgerEntry, Registration
from registrations.tests.conftest import APP_BASE_URL, APP_KEY, install_token, request_token
from registrations.tests.factories import RegistrationFactory

pytestmark = pytest.mark.django_db
KID = "kid-2026-01"


def install_body(client_key=None, **fields):
    body = {
        "key": APP_KEY,
        "clientKey": client_key or str(uuid.uuid4()),
        "sharedSecret": secrets.token_urlsafe(32),
        "baseUrl": "https://acme.atlassian.net/wiki",
        "displayUrl": "https://wiki.acme.example",
        "productType": "confluence",
        "description": "Atlassian Confluence at https://acme.atlassian.net/wiki",
        "serviceEntitlementNumber": "SEN-123",
        "pluginsVersion": "1001.0.0",
        "serverVersion": "6452",
        "oauthClientId": "oauth-client",
        "eventType": "installed",
        "publicKey": "ignored",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not Ellipsis}


def post(client, event, body, token, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    headers = {"HTTP_AUTHORIZATION": f"JWT {token}"} if token else {}
    return client.post(f"/connect/{event}", data=data, content_type="application/json", **headers, **extra)


@pytest.fixture
def signed(key_service, rsa_key):
    """Key service knows KID; returns a function making a valid signed-install token for a body."""
    key_service.keys[KID] = rsa_key.public_pem

    def make(body, event="installed", **claims):
        return install_token(rsa_key, KID, body["clientKey"], f"/connect/{event}", **claims)

    return make


def assert_401(response, reason_fragment):
    """A refused lifecycle call or page: 401, ``WWW-Authenticate: JWT``, and the reason we expect."""
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "JWT"
    assert reason_fragment.lower() in response.json()["error"].lower(), response.json()


def do_install(client, signed, **fields):
    body = install_body(**fields)
    response = post(client, "installed", body, signed(body))
    assert response.status_code == 204, response.content
    return body


# --- descriptor -------------------------------------------------------------------------------------


def test_descriptor_is_built_from_settings(client, settings):
    settings.CONNECT_SCOPES = ["read", "WRITE"]
    descriptor = client.get("/atlassian-connect.json").json()
    assert descriptor["key"] == APP_KEY
    assert descriptor["baseUrl"] == APP_BASE_URL
    assert descriptor["authentication"] == {"type": "jwt"}
    assert descriptor["scopes"] == ["READ", "WRITE"]
    assert descriptor["apiMigrations"] == {"signed-install": True, "context-qsh": True, "gdpr": True}
    assert descriptor["lifecycle"] == {
        "installed": "/connect/installed",
        "uninstalled": "/connect/uninstalled",
        "enabled": "/connect/enabled",
        "disabled": "/connect/disabled",
    }
    assert descriptor["vendor"]["name"] == settings.CONNECT_VENDOR_NAME
    [page] = descriptor["modules"]["generalPages"]
    assert page["key"] == "identity-proof"
    assert page["url"] == "/connect/identity-proof/"


def test_identity_proof_page_needs_a_jwt(client):
    assert_401(client.get("/connect/identity-proof/"), "required")


# --- installed --------------------------------------------------------------------------------------


def test_signed_install_creates_an_installed_registration(client, signed):
    body = do_install(client, signed)
    registration = Registration.objects.get(client_key=body["clientKey"])
    assert registration.state == Registration.State.INSTALLED
    assert registration.shared_secret == body["sharedSecret"]
    assert registration.base_url == body["baseUrl"]
    assert registration.service_entitlement_number == "SEN-123"
    assert registration.oauth_client_id == "oauth-client"


def test_shared_secret_is_not_stored_in_plain_text(client, signed):
    from django.db import connection

    body = do_install(client, signed)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT shared_secret FROM registrations_registration WHERE client_key = %s", [body["clientKey"]]
        )
        stored = bytes(cursor.fetchone()[0])
    assert body["sharedSecret"].encode() not in stored


def test_install_key_is_fetched_once_and_cached_by_kid(client, signed, key_service):
    do_install(client, signed)
    do_install(client, signed)
    assert key_service.requests == [f"/{KID}"]


def test_audience_with_trailing_slash_is_accepted(client, signed):
    body = install_body()
    assert post(client, "installed", body, signed(body, aud=APP_BASE_URL + "/")).status_code == 204


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "https://other.example"}, "audience"),
        ({"aud": ...}, "aud"),
        ({"iss": "someone-else"}, "issuer"),
        ({"exp": ...}, "exp"),
        ({"exp": int(time.time()) - 600}, "expired"),
        ({"qsh": ...}, "qsh"),
        ({"qsh": "context-qsh"}, "context"),
        ({"qsh": "0" * 64}, "qsh"),
    ],
)
def test_signed_install_with_bad_claims_is_401(client, signed, claims, reason):
    body = install_body()
    response = post(client, "installed", body, signed(body, **claims))
    assert_401(response, reason)
    assert not Registration.objects.exists()


def test_install_signed_by_an_unknown_key_is_401(client, signed, other_rsa_key):
    body = install_body()
    token = install_token(other_rsa_key, KID, body["clientKey"])
    assert_401(post(client, "installed", body, token), "signature does not verify")


def test_install_without_kid_is_401(client, rsa_key, key_service):
    body = install_body()
    token = pyjwt.encode(
        {"iss": body["clientKey"], "aud": APP_BASE_URL, "exp": int(time.time()) + 60, "qsh": "x"},
        rsa_key.private,
        algorithm="RS256",
    )
    assert_401(post(client, "installed", body, token), "no valid 'kid'")
    assert key_service.requests == []


@pytest.mark.parametrize("kid", ["../etc/passwd", "..", "a/b", "x" * 300, ""])
def test_install_with_unsafe_kid_is_401_without_fetching(client, rsa_key, key_service, kid):
    body = install_body()
    token = install_token(rsa_key, "placeholder", body["clientKey"], headers={"kid": kid})
    assert_401(post(client, "installed", body, token), "no valid 'kid'")
    assert key_service.requests == []


def test_hs256_install_signed_with_the_public_key_is_401(client, signed, rsa_key):
    """Algorithm confusion: the public key used as an HMAC secret must not verify."""
    body = install_body()
    claims = {"iss": body["clientKey"], "aud": APP_BASE_URL, "exp": int(time.time()) + 60, "qsh": "x"}
    # PyJWT refuses to do this, so the attacker's token is assembled by hand.
    segments = [
        base64url_encode(json.dumps(part).encode()) for part in ({"alg": "HS256", "kid": KID}, claims)
    ]
    signing_input = b".".join(segments)
    signature = hmac.new(rsa_key.public_pem.encode(), signing_input, hashlib.sha256).digest()
    token = (signing_input + b"." + base64url_encode(signature)).decode()
    assert_401(post(client, "installed", body, token), "RS256")


def test_install_with_alg_none_is_401(client, signed):
    body = install_body()
    token = pyjwt.encode({"iss": body["clientKey"]}, None, algorithm="none", headers={"kid": KID})
    assert_401(post(client, "installed", body, token), "RS256")


def test_unsigned_install_is_401(client, key_service):
    assert_401(post(client, "installed", install_body(), None), "required")


def test_unknown_kid_is_401(client, rsa_key, key_service):
    body = install_body()
    response = post(client, "installed", body, install_token(rsa_key, "unknown-kid", body["clientKey"]))
    assert_401(response, "signing key is unknown")


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_key_service_errors_are_503_not_401(client, signed, key_service, status):
    key_service.status = status
    body = install_body()
    response = post(client, "installed", body, signed(body))
    assert response.status_code == 503
    assert response["Retry-After"]
    assert not Registration.objects.exists()


def test_key_service_timeout_is_503(client, signed, key_service):
    key_service.delay = 1.5  # CONNECT_INSTALL_KEYS_TIMEOUT is 0.5 s in the tests
    body = install_body()
    assert post(client, "installed", body, signed(body)).status_code == 503


def test_key_service_down_is_503(client, signed, settings):
    settings.CONNECT_INSTALL_KEYS_URL = "http://127.0.0.1:9"  # discard port: connection refused
    body = install_body()
    assert post(client, "installed", body, signed(body)).status_code == 503


def test_key_service_answering_garbage_is_503(client, signed, key_service):
    key_service.body = b"<html>maintenance</html>"
    body = install_body()
    assert post(client, "installed", body, signed(body)).status_code == 503


def test_reinstall_replaces_the_secret_only_when_signed(client, signed):
    body = do_install(client, signed)
    first_secret = body["sharedSecret"]
    forged = install_body(body["clientKey"], sharedSecret="f" * 40)
    assert_401(post(client, "installed", forged, "not-a-token"), "malformed")
    assert Registration.objects.get().shared_secret == first_secret
    do_install(client, signed, client_key=body["clientKey"], sharedSecret="n" * 40)
    assert Registration.objects.get().shared_secret == "n" * 40
    assert Registration.objects.count() == 1


def test_reinstall_of_an_enabled_tenant_keeps_it_enabled(client, signed):
    tenant = RegistrationFactory(base_url="https://old.atlassian.net/wiki")
    do_install(client, signed, client_key=tenant.client_key)
    tenant.refresh_from_db()
    assert tenant.state == Registration.State.ENABLED
    assert tenant.base_url == "https://acme.atlassian.net/wiki"


# --- bad bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "JSON"),
        ("[1, 2]", "object"),
        (install_body(key="com.other.app"), "key"),
        (install_body(eventType="uninstalled"), "eventType"),
        (install_body(clientKey=...), "clientKey"),
        (install_body(clientKey=42), "clientKey"),
        (install_body(sharedSecret=...), "sharedSecret"),
        (install_body(sharedSecret="short"), "sharedSecret"),
        (install_body(baseUrl="http://acme.atlassian.net/wiki"), "baseUrl"),
        (install_body(baseUrl="javascript:alert(1)"), "baseUrl"),
        (install_body(baseUrl=["https://a.example"]), "baseUrl"),
        (install_body(displayUrl="ftp://x.example"), "displayUrl"),
        (install_body(productType="Confluence Cloud!"), "productType"),
        (install_body(description="x" * 501), "description"),
        (install_body(description="nul\x00byte"), "description"),
        (install_body(serverVersion=6452), "serverVersion"),
    ],
)
def test_bad_install_body_is_400_with_a_reason(client, signed, body, reason):
    token = signed({"clientKey": "whatever"})
    response = post(client, "installed", body, token)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert not Registration.objects.exists()


# --- uninstalled, enabled, disabled -----------------------------------------------------------------


def event_body(client_key, event):
    return {"key": APP_KEY, "clientKey": client_key, "eventType": event, "productType": "confluence"}


def hs_token(tenant, event, **claims):
    return request_token(tenant, method="POST", url=f"/connect/{event}", **claims)


def test_enable_and_disable_are_signed_with_the_shared_secret(client):
    tenant = RegistrationFactory(state=Registration.State.INSTALLED)
    response = post(client, "enabled", event_body(tenant.client_key, "enabled"), hs_token(tenant, "enabled"))
    assert response.status_code == 204
    tenant.refresh_from_db()
    assert tenant.state == Registration.State.ENABLED and tenant.enabled_at
    response = post(
        client, "disabled", event_body(tenant.client_key, "disabled"), hs_token(tenant, "disabled")
    )
    assert response.status_code == 204
    tenant.refresh_from_db()
    assert tenant.state == Registration.State.DISABLED and tenant.disabled_at


def test_enable_signed_with_an_rs256_install_key_is_accepted(client, signed):
    tenant = RegistrationFactory(state=Registration.State.DISABLED)
    body = event_body(tenant.client_key, "enabled")
    assert post(client, "enabled", body, signed(body, "enabled")).status_code == 204


def test_enable_with_wrong_secret_or_foreign_issuer_is_401(client):
    tenant = RegistrationFactory(state=Registration.State.DISABLED)
    other = RegistrationFactory()
    body = event_body(tenant.client_key, "enabled")
    assert_401(post(client, "enabled", body, hs_token(tenant, "enabled", secret="w" * 40)), "signature")
    assert_401(post(client, "enabled", body, hs_token(other, "enabled")), "issuer does not match")
    tenant.refresh_from_db()
    assert tenant.state == Registration.State.DISABLED


def test_repeated_events_are_idempotent(client):
    tenant = RegistrationFactory(state=Registration.State.ENABLED)
    body = event_body(tenant.client_key, "disabled")
    for _ in range(3):
        assert post(client, "disabled", body, hs_token(tenant, "disabled")).status_code == 204
    tenant.refresh_from_db()
    assert tenant.state == Registration.State.DISABLED


def test_disabled_arriving_after_uninstalled_leaves_the_tenant_uninstalled(client, signed):
    tenant = RegistrationFactory(state=Registration.State.ENABLED)
    body = event_body(tenant.client_key, "uninstalled")
    assert post(client, "uninstalled", body, signed(body, "uninstalled")).status_code == 204
    body = event_body(tenant.client_key, "disabled")
    assert post(client, "disabled", body, hs_token(tenant, "disabled")).status_code == 204
    tenant.refresh_from_db()
    assert tenant.state == Registration.State.UNINSTALLED


def test_uninstall_keeps_the_row(client, signed):
    tenant = RegistrationFactory()
    body = event_body(tenant.client_key, "uninstalled")
    assert post(client, "uninstalled", body, signed(body, "uninstalled")).status_code == 204
    tenant.refresh_from_db()
    assert tenant.state == Registration.State.UNINSTALLED and tenant.uninstalled_at


def test_uninstall_of_a_site_with_a_pending_erasure_deletes_its_record_and_completes_the_entry(
    client, signed
):
    """Art. 17(1)(a) GDPR: a site's record kept for an erasure request only because the app was still
    installed is erased as soon as the app is uninstalled (it is no longer necessary)."""
    tenant = RegistrationFactory(state=Registration.State.ENABLED)
    services.erase_site(client_key=tenant.client_key, reference="DSR-PEND01", actor="test")
    assert ErasureLedgerEntry.objects.get().pending is True

    body = event_body(tenant.client_key, "uninstalled")
    assert post(client, "uninstalled", body, signed(body, "uninstalled")).status_code == 204

    assert not Registration.objects.filter(client_key=tenant.client_key).exists()
    entry = ErasureLedgerEntry.objects.get()
    assert entry.pending is False and entry.reference == "DSR-PEND01"
    # A repeat of the callback (Atlassian retries) is harmless.
    assert post(client, "uninstalled", body, signed(body, "uninstalled")).status_code == 204


def test_a_site_reinstalled_after_its_erasure_keeps_its_row_on_the_next_uninstall(client, signed):
    tenant = RegistrationFactory(state=Registration.State.ENABLED)
    services.erase_site(client_key=tenant.client_key, actor="test")
    uninstall = event_body(tenant.client_key, "uninstalled")
    assert post(client, "uninstalled", uninstall, signed(uninstall, "uninstalled")).status_code == 204

    do_install(client, signed, client_key=tenant.client_key)
    assert post(client, "uninstalled", uninstall, signed(uninstall, "uninstalled")).status_code == 204

    assert Registration.objects.get(client_key=tenant.client_key).state == Registration.State.UNINSTALLED


def test_uninstall_must_be_signed_with_rs256(client):
    tenant = RegistrationFactory()
    body = event_body(tenant.client_key, "uninstalled")
    assert_401(post(client, "uninstalled", body, hs_token(tenant, "uninstalled")), "RS256")
    tenant.refresh_from_db()
    assert tenant.state == Registration.State.ENABLED


def test_lifecycle_endpoints_refuse_get(client):
    assert client.get("/connect/installed").status_code == 405


def test_lifecycle_events_are_logged_with_client_key_only(client, signed, caplog):
    with caplog.at_level("INFO", logger="artemis.connect"):
        body = do_install(client, signed)
    assert f"connect lifecycle installed client_key={body['clientKey']} created=True" in caplog.text
    assert body["sharedSecret"] not in caplog.text


# --- round trip -------------------------------------------------------------------------------------


def test_round_trip_install_use_uninstall_reinstall_with_new_secret(client, signed):
    page = "/connect/identity-proof/"
    body = do_install(client, signed)
    tenant = Registration.objects.get()
    old_token = request_token(tenant, qsh="context-qsh")
    assert client.get(page, HTTP_AUTHORIZATION=f"JWT {old_token}").status_code == 200

    uninstall = event_body(body["clientKey"], "uninstalled")
    assert post(client, "uninstalled", uninstall, signed(uninstall, "uninstalled")).status_code == 204
    assert_401(client.get(page, HTTP_AUTHORIZATION=f"JWT {old_token}"), "not installed or not enabled")

    new_secret = secrets.token_urlsafe(32)
    do_install(client, signed, client_key=body["clientKey"], sharedSecret=new_secret)
    tenant.refresh_from_db()
    assert tenant.state == Registration.State.INSTALLED
    assert_401(client.get(page, HTTP_AUTHORIZATION=f"JWT {old_token}"), "signature")
    new_token = request_token(tenant, qsh="context-qsh")
    assert client.get(page, HTTP_AUTHORIZATION=f"JWT {new_token}").status_code == 200
    assert Registration.objects.count() == 1


# --- property-based: never a 500 --------------------------------------------------------------------

# Text includes lone surrogates: JSON can carry them, and no database or log accepts them.
any_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
field_names = st.sampled_from(
    [
        "key",
        "clientKey",
        "sharedSecret",
        "baseUrl",
        "displayUrl",
        "productType",
        "description",
        "eventType",
        "serviceEntitlementNumber",
        "pluginsVersion",
        "serverVersion",
        "oauthClientId",
    ]
)
wsgi_text = st.text(alphabet=st.characters(max_codepoint=255), max_size=200)


@hsettings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(
    event=st.sampled_from(["installed", "uninstalled", "enabled", "disabled"]),
    overrides=st.dictionaries(field_names, json_values, max_size=4),
    raw=st.none() | st.binary(max_size=200),
    authorization=st.none() | wsgi_text,
)
def test_arbitrary_lifecycle_requests_never_500(client, signed, event, overrides, raw, authorization):
    body = {**install_body(eventType=event), **overrides}
    data = raw if raw is not None else json.dumps(body)
    if authorization is None and isinstance(body.get("clientKey"), str):
        authorization = f"JWT {signed(body, event)}"
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    response = client.post(f"/connect/{event}", data=data, content_type="application/json", **headers)
    assert response.status_code in {204, 400, 401}
