"""Tenant base URLs: Atlassian cloud sites only, and only their origin reaches the CSP (SECURITY.md,
"Security round two", items 2 and 5)."""

import re

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from dsr_requests.tests.test_journey import page_token
from registrations import base_urls
from registrations.models import Registration
from registrations.tests.factories import RegistrationFactory
from registrations.tests.test_views import install_body, post, signed  # noqa: F401 (fixture)

GOOD = [
    "https://acme.atlassian.net",
    "https://acme.atlassian.net/",
    "https://acme.atlassian.net/wiki",
    "https://a-b-c.jira.com",
    "https://team.jira-dev.com/wiki",
    "https://x1.atlassian-dev.net",
]
BAD = [
    "http://acme.atlassian.net",  # not https
    "https://user@acme.atlassian.net",  # user info
    "https://user:pw@acme.atlassian.net",
    "https://evil.com@acme.atlassian.net",
    "https://acme.atlassian.net@evil.com",
    "https://acme.atlassian.net:443",  # port
    "https://acme.atlassian.net:8443/wiki",
    "https://acme.atlassian.net; script-src *",  # header injection
    "https://acme.atlassian.net;frame-ancestors *",
    "https://acme.atlassian.net/wiki; script-src *",
    "https://acme.atlassian.net https://evil.com",
    "https://acme.atlassian.net\\evil.com",
    "https://acme.atlassian.net/%0d%0aX: y",
    "https://acme.atlassian.net\r\nX-Injected: 1",
    "https://acme.atlassian.net/wiki?x=1",  # query
    "https://acme.atlassian.net/#frag",  # fragment
    "https://atlassian.net",  # the domain itself is no site
    "https://acme.atlassian.net.evil.com",  # suffix trick
    "https://acmeatlassian.net",
    "https://evil-atlassian.net",
    "https://ACME.ATLASSIAN.NET",  # Atlassian sends lower case
    "https://-acme.atlassian.net",
    "https://acme..atlassian.net",
    "https://[::1]",
    "https://127.0.0.1",
    "https://acme.atlassian.net.",
    "javascript:alert(1)",
    "",
    "https://" + "a" * 300 + ".atlassian.net",
]


@pytest.mark.parametrize("value", GOOD)
def test_atlassian_cloud_sites_are_accepted_and_reduced_to_their_origin(value):
    origin = base_urls.origin(value)
    assert origin is not None and value.startswith(origin)
    assert re.fullmatch(r"https://[a-z0-9.-]+", origin)


@pytest.mark.parametrize("value", BAD)
def test_attack_base_urls_with_user_info_ports_injection_or_foreign_hosts_are_refused(value):
    assert not base_urls.is_valid(value)
    assert base_urls.origin(value) is None


def test_a_setting_adds_domains_for_tests_and_staging(settings):
    assert not base_urls.is_valid("https://site.example.test")
    settings.CONNECT_EXTRA_BASE_URL_DOMAINS = ["example.test"]
    assert base_urls.origin("https://site.example.test/wiki") == "https://site.example.test"
    assert not base_urls.is_valid("https://example.test")


@given(st.text(max_size=300))
def test_any_accepted_value_yields_an_origin_with_only_host_characters(value):
    origin = base_urls.origin(value)
    if origin is not None:
        assert re.fullmatch(r"https://[a-z0-9.-]+", origin)
        assert value.startswith(origin)
        assert origin.endswith(base_urls.CONNECT_BASE_URL_DOMAINS)


@given(
    prefix=st.text(max_size=20),
    suffix=st.text(max_size=40),
)
def test_decorating_a_valid_site_with_anything_never_lets_a_foreign_character_into_the_origin(prefix, suffix):
    value = f"{prefix}https://acme.atlassian.net{suffix}"
    origin = base_urls.origin(value)
    assert origin in (None, "https://acme.atlassian.net") or re.fullmatch(r"https://[a-z0-9.-]+", origin)
    if origin is not None:
        assert ";" not in origin and "@" not in origin and ":" not in origin.removeprefix("https:")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value", ["https://acme.atlassian.net; script-src *", "https://u@acme.atlassian.net"]
)
def test_attack_an_install_with_such_a_base_url_is_a_400(client, signed, value):  # noqa: F811
    body = install_body(baseUrl=value)
    response = post(client, "installed", body, signed(body))
    assert response.status_code == 400
    assert "Atlassian cloud site" in response.json()["error"]
    assert not Registration.objects.filter(client_key=body["clientKey"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "stored",
    [
        "https://acme.atlassian.net; script-src 'unsafe-inline' *",
        "https://user:pw@acme.atlassian.net",
        "https://evil.example.com",
    ],
)
def test_attack_a_stored_base_url_that_does_not_pass_never_reaches_the_csp(client, stored):
    """An install from before the check: the page is not frameable at all, and nothing is injected."""
    tenant = RegistrationFactory(base_url=stored)
    response = client.get(f"/connect/identity-proof/?jwt={page_token(tenant, sub='557058:abc')}", secure=True)
    assert response.status_code == 200
    header = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in header.split(";"))
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in header and "evil" not in header and "user" not in header
    assert header.count("script-src") == 1


@pytest.mark.django_db
def test_the_frame_ancestors_of_a_valid_site_is_its_origin_only(client):
    tenant = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    response = client.get(f"/connect/identity-proof/?jwt={page_token(tenant, sub='557058:abc')}", secure=True)
    assert "frame-ancestors https://acme.atlassian.net;" in response["Content-Security-Policy"] + ";"


@pytest.mark.django_db
def test_connect_pages_and_their_refusals_are_never_cached(client):
    """Security round two, item 6: a page for one tenant and account must not sit in any cache."""
    tenant = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    page = client.get(f"/connect/identity-proof/?jwt={page_token(tenant, sub='557058:abc')}", secure=True)
    refused = client.get("/connect/identity-proof/", secure=True)
    assert page.status_code == 200 and refused.status_code == 401
    for response in (page, refused):
        assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


@examples(max_examples=200)
@given(
    base_url=st.text(max_size=60)
    | st.from_regex(r"https://[a-z0-9-]{1,12}\.atlassian\.net(/wiki)?", fullmatch=True)
)
def test_a_connect_pages_policy_filled_in_per_site_is_the_one_django_csp_builds_for_it(base_url):
    """Issue 19, item 1: the Connect policy is built once with a stand-in site and filled in per request;
    for any stored base URL (valid or not) it is exactly what django-csp builds for that site's origin
    (``'none'`` for a URL that does not pass)."""
    from csp.utils import build_policy

    from registrations import jwt

    ancestor = base_urls.origin(base_url) or "'none'"
    assert jwt.connect_policy(base_url) == build_policy(
        update={"script-src": [jwt.CONNECT_CDN]}, replace={"frame-ancestors": [ancestor]}
    )
