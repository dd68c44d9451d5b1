"""The Atlassian-account proof from a Forge app: POST /forge/identity-proof/ (issue 17, items 3, 4).

The FIT comes from a real https JWKS server on loopback; the code from the same service as the Connect
page's, so single use, expiry and the attempt limit are shared by both platforms.
"""

import json
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.utils import timezone

from dsr_requests import services
from dsr_requests.models import IdentityCheck, RequestState
from dsr_requests.tests.factories import RightsRequestFactory
from dsr_requests.tests.test_journey import page_token
from registrations import forge, forge_keys, personal_data
from registrations.models import FitFailureCount, ForgeInstallation, UsageCount
from registrations.tests.factories import RegistrationFactory
from registrations.tests.forge_fixtures import ACCOUNT, APP_ID, CLOUD_ID, SITE_URL, fit

pytestmark = pytest.mark.django_db
INSTALLATION = "ari:cloud:ecosystem::installation/inst-1"


def installed(registration=None, state=ForgeInstallation.State.INSTALLED):
    now = timezone.now()
    return ForgeInstallation.objects.create(
        installation_id=INSTALLATION,
        app_id=APP_ID,
        cloud_id=CLOUD_ID,
        site_url=SITE_URL,
        state=state,
        installed_at=now,
        updated_at=now,
        last_event_at=now,
        registration=registration,
    )


def code_for(site_url=""):
    request = RightsRequestFactory(state=RequestState.VERIFYING, site_url=site_url)
    IdentityCheck.objects.create(request=request, step="email", method="test", outcome="passed")
    return request, services.issue_account_code(rights_request=request)


def post(client, jwks, body, **claims):
    token = fit(jwks, **claims)
    if not isinstance(body, str | bytes):
        body = json.dumps(body)
    return client.post(
        "/forge/identity-proof/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def test_the_code_binds_the_principal_and_site_and_answers_json(client, forge_jwks):
    registration = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    installed(registration)
    request, code = code_for(site_url="https://acme.atlassian.net")
    response = post(client, forge_jwks, {"code": code})
    assert response.status_code == 200 and response.json() == {"reference": request.reference}
    request.refresh_from_db()
    assert request.account_id == ACCOUNT
    assert request.site_client_key == registration.client_key
    assert request.verified_site_url == SITE_URL
    assert request.identity_checks.get(step="account").method == "one-time code in the Forge app"
    assert UsageCount.objects.get(module="forge:identity-proof").count == 1
    assert response["Cache-Control"].startswith("max-age=0")


def test_a_forge_only_site_binds_the_account_and_site_url_without_a_client_key(client, forge_jwks):
    installed()
    request, code = code_for()
    assert post(client, forge_jwks, {"code": code}).status_code == 200
    request.refresh_from_db()
    assert (request.account_id, request.site_client_key, request.verified_site_url) == (ACCOUNT, "", SITE_URL)


def test_a_code_used_in_the_connect_app_is_refused_in_the_forge_app(client, forge_jwks):
    """Single use across platforms: the same service marks the code used."""
    registration = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    installed(registration)
    _request, code = code_for()
    token = page_token(registration, sub=ACCOUNT)
    assert client.post(f"/connect/identity-proof/?jwt={token}", {"code": code}).status_code == 200
    response = post(client, forge_jwks, {"code": code})
    assert response.status_code == 400 and "already been used" in response.json()["error"]


def test_an_expired_code_is_refused(client, forge_jwks, settings):
    installed()
    request, code = code_for()
    with time_machine.travel(timezone.now() + timedelta(minutes=settings.DSR_ACCOUNT_CODE_TTL_MINUTES + 1)):
        response = post(client, forge_jwks, {"code": code})
    assert response.status_code == 400 and "expired" in response.json()["error"]
    request.refresh_from_db()
    assert request.account_id == ""


def test_a_code_for_a_request_about_another_site_is_refused(client, forge_jwks):
    installed()
    request, code = code_for(site_url="https://navy.atlassian.net")
    response = post(client, forge_jwks, {"code": code})
    assert response.status_code == 400 and "another Atlassian site" in response.json()["error"]


def test_attempts_are_limited_per_account_and_site_across_connect_and_forge(client, forge_jwks, settings):
    settings.DSR_RATE_CODE_PER_ACCOUNT = "3/900"
    registration = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    installed(registration)
    code_for()
    token = page_token(registration, sub=ACCOUNT)
    statuses = [client.post(f"/connect/identity-proof/?jwt={token}", {"code": "WRONG123"}).status_code]
    statuses += [post(client, forge_jwks, {"code": "WRONG123"}).status_code for _ in range(3)]
    assert statuses == [400, 400, 400, 429]


def test_a_token_without_a_principal_binds_nothing(client, forge_jwks):
    installed()
    request, code = code_for()
    assert post(client, forge_jwks, {"code": code}, principal=...).status_code == 403
    request.refresh_from_db()
    assert request.account_id == ""


def test_an_uninstalled_or_unknown_installation_is_401(client, forge_jwks):
    _request, code = code_for()
    assert post(client, forge_jwks, {"code": code}).status_code == 401
    installed(state=ForgeInstallation.State.UNINSTALLED)
    response = post(client, forge_jwks, {"code": code})
    assert response.status_code == 401 and response.json()["error"]
    assert FitFailureCount.objects.get(reason="installation").count == 2


@pytest.mark.parametrize("body", ["", "[]", "{}", '{"code": 5}', '{"code": "<script>"}', "x" * 5000])
def test_a_bad_body_is_400(client, forge_jwks, body):
    installed()
    assert post(client, forge_jwks, body).status_code == 400


def test_a_bad_token_is_401_and_a_jwks_outage_503(client, forge_jwks):
    installed()
    assert post(client, forge_jwks, {"code": "ABCD"}, aud="ari:cloud:ecosystem::app/other").status_code == 401
    cache.clear()  # no copy of the key set anywhere: the outage cannot be bridged
    forge_keys.clear_local()
    forge_jwks.status = 500
    assert post(client, forge_jwks, {"code": "ABCD"}).status_code == 503


def test_get_is_not_allowed(client, forge_jwks):
    assert client.get("/forge/identity-proof/").status_code == 405


def test_accounts_bound_through_forge_are_in_the_personal_data_report(client, forge_jwks):
    """Atlassian's personal data reporting covers every stored account ID, however it was bound."""
    registration = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    installed(registration)
    _request, code = code_for()
    assert post(client, forge_jwks, {"code": code}).status_code == 200
    accounts = personal_data.collect_accounts()
    assert ACCOUNT in accounts
    assert registration.client_key in accounts[ACCOUNT].sites


def test_forge_only_bound_accounts_are_reported_too(client, forge_jwks):
    installed()
    _request, code = code_for()
    post(client, forge_jwks, {"code": code})
    assert ACCOUNT in personal_data.collect_accounts()


def test_the_tenant_of_the_site_lists_both_platforms_after_a_proof(client, forge_jwks):
    registration = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    installed(registration)
    (tenant,) = forge.list_tenants()
    assert {p["platform"] for p in tenant.platforms} == {"connect", "forge"}
