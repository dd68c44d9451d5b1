"""Admin: each tenant's platforms, Forge installations, refused FITs counted per reason (issue 17, item 4)."""

import json

import pytest

from registrations.models import ForgeInstallation
from registrations.tests.factories import RegistrationFactory
from registrations.tests.forge_fixtures import fit, lifecycle

pytestmark = pytest.mark.django_db


def test_the_registration_list_shows_each_tenants_platforms(admin_client, client, forge_jwks):
    both = RegistrationFactory(base_url="https://acme.atlassian.net/wiki", client_key="both-key")
    RegistrationFactory(base_url="https://solo.atlassian.net/wiki", client_key="solo-key")
    lifecycle(client, forge_jwks, "installed")
    assert ForgeInstallation.objects.get().registration == both
    html = admin_client.get("/admin/registrations/registration/").content.decode()
    assert "Connect + Forge" in html and html.count("Connect + Forge") == 1
    assert both.shared_secret not in html


def test_the_forge_installation_list_shows_the_site_and_its_connect_registration(
    admin_client, client, forge_jwks
):
    RegistrationFactory(base_url="https://acme.atlassian.net/wiki", client_key="both-key")
    lifecycle(client, forge_jwks, "installed")
    html = admin_client.get("/admin/registrations/forgeinstallation/").content.decode()
    assert "https://acme.atlassian.net" in html and "both-key" in html
    installation = ForgeInstallation.objects.get()
    detail = admin_client.get(f"/admin/registrations/forgeinstallation/{installation.pk}/change/")
    assert detail.status_code == 200
    assert (
        admin_client.post(f"/admin/registrations/forgeinstallation/{installation.pk}/delete/").status_code
        == 403
    )


def test_refused_tokens_are_counted_per_reason_in_the_admin(admin_client, client, forge_jwks):
    body = json.dumps({"eventType": "avi:forge:installed:app"})
    for claims in ({"iss": "x"}, {"iss": "y"}, {"exp": 1}, {"aud": "nope"}):
        token = fit(forge_jwks, module_key="lifecycle-events", **claims)
        client.post(
            "/forge/events/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
    html = admin_client.get("/admin/registrations/fitfailurecount/").content.decode()
    assert "Refused Forge tokens per reason" in html
    assert "<td>iss</td><td>2</td>" in html
    assert "<td>expired</td><td>1</td>" in html and "<td>aud</td><td>1</td>" in html
