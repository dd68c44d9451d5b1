"""Security headers on a public page, the admin, a JWT-protected Connect page and an error page."""

import re
from pathlib import Path

import pytest
from django.urls import reverse

from dsr_requests.tests.test_journey import page_token
from registrations.tests.factories import RegistrationFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def policy(response):
    """The Content-Security-Policy as {directive: value}."""
    parts = [part.strip() for part in response["Content-Security-Policy"].split(";") if part.strip()]
    return dict((part.split(" ", 1) + [""])[:2] for part in parts)


def assert_common_headers(response):
    csp = policy(response)
    assert csp["default-src"] == "'self'"
    assert csp["script-src"].startswith("'self'") and "unsafe-inline" not in csp["script-src"]
    assert "unsafe-eval" not in csp["script-src"]
    assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert f"{feature}=()" in response["Permissions-Policy"]
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


@pytest.fixture(autouse=True)
def _production_transport(settings):
    """HSTS as in production (the local .env runs with DEBUG, where it is off); requests come over https."""
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True


@pytest.mark.parametrize("path", ["/", "/requests/new/"])
def test_public_pages_forbid_framing_and_inline_script(client, path):
    response = client.get(path, secure=True)
    assert response.status_code == 200
    assert_common_headers(response)
    assert policy(response)["frame-ancestors"] == "'none'"
    assert response["X-Frame-Options"] == "DENY"


def test_the_admin_forbids_framing_and_inline_script(admin_client):
    for url in (reverse("admin:login"), reverse("admin:dsr_requests_rightsrequest_changelist")):
        response = admin_client.get(url, secure=True)
        assert response.status_code in (200, 302)
        assert_common_headers(response)
        assert policy(response)["frame-ancestors"] == "'none'"
        assert response["X-Frame-Options"] == "DENY"


def test_the_connect_page_may_be_framed_by_its_tenants_site_only(client):
    tenant = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    token = page_token(tenant, sub="557058:abc")
    response = client.get(f"/connect/identity-proof/?jwt={token}", secure=True)
    assert response.status_code == 200
    assert_common_headers(response)
    csp = policy(response)
    assert csp["frame-ancestors"] == "https://acme.atlassian.net"
    assert csp["script-src"] == "'self' https://connect-cdn.atl-paas.net"
    assert "X-Frame-Options" not in response


def test_a_connect_page_without_a_valid_token_is_not_frameable(client):
    response = client.get("/connect/identity-proof/", secure=True)
    assert response.status_code == 401
    assert policy(response)["frame-ancestors"] == "'none'"


def test_the_404_page_has_the_same_headers(client):
    response = client.get("/no/such/page/", secure=True)
    assert response.status_code == 404
    assert_common_headers(response)
    assert policy(response)["frame-ancestors"] == "'none'"
    assert response["X-Frame-Options"] == "DENY"


def test_no_served_template_has_inline_script_or_style_or_event_handlers():
    """Emails are exempt (no CSP applies to them; mail clients need inline styles)."""
    offenders = []
    for template in ROOT.glob("**/templates/**/*.html"):
        if {"emails", ".venv", "node_modules"} & set(template.parts) or "site-packages" in str(template):
            continue
        text = template.read_text()
        if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text) or re.search(r"\sstyle=", text):
            offenders.append(str(template.relative_to(ROOT)))
        if re.search(r"\son[a-z]+=", text) or "javascript:" in text:
            offenders.append(str(template.relative_to(ROOT)))
    assert offenders == []


def test_a_connect_pages_policy_is_the_site_policy_with_its_two_changes_built_once(client, settings):
    """Issue 19, item 1: the Connect page's whole policy is built once, filled in per site and sent as it is
    (``security.middleware.CSPMiddleware`` does not rebuild it); it is the text django-csp would build
    from the same changes, and follows the settings when they change."""
    from csp.utils import build_policy

    from registrations import jwt

    tenant = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    token = page_token(tenant, sub="557058:abc")
    expected = build_policy(
        update={"script-src": [jwt.CONNECT_CDN]}, replace={"frame-ancestors": ["https://acme.atlassian.net"]}
    )
    assert client.get(f"/connect/identity-proof/?jwt={token}", secure=True)["Content-Security-Policy"] == (
        expected
    )
    settings.CONTENT_SECURITY_POLICY = {
        "DIRECTIVES": {**settings.CONTENT_SECURITY_POLICY["DIRECTIVES"], "img-src": ["'self'"]}
    }
    assert policy(client.get(f"/connect/identity-proof/?jwt={token}", secure=True))["img-src"] == "'self'"


def test_a_report_only_policy_is_still_added_to_a_page_that_brings_its_own(client, settings):
    tenant = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    token = page_token(tenant, sub="557058:abc")
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    response = client.get(f"/connect/identity-proof/?jwt={token}", secure=True)
    assert response["Content-Security-Policy-Report-Only"] == "default-src 'none'"
    assert policy(response)["frame-ancestors"] == "https://acme.atlassian.net"
    assert client.get("/", secure=True)["Content-Security-Policy-Report-Only"] == "default-src 'none'"
