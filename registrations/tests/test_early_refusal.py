"""A Connect token naming no tenant is refused before the middleware stack, with the view's own answer.

Issue 19, item 2: forged issuers must not cost what a served page costs. These tests pin what the early
refusal may and may not do: it answers only an HS256 token whose ``iss`` is no tenant, on a view marked
as Connect-protected, with the same status, body, ``WWW-Authenticate``, caching headers and log line as
the view's full check; every other request takes the usual path. No timing here (docs/benchmarks.md).
"""

import logging

import pytest
from django.conf import settings
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from registrations import middleware, tenant_cache
from registrations.tests.conftest import request_token
from registrations.tests.factories import RegistrationFactory
from registrations.tests.test_tenant_cache_bounds import forged_token

pytestmark = [pytest.mark.django_db, pytest.mark.urls("registrations.tests.urls")]

EARLY = "registrations.middleware.ConnectEarlyRefusalMiddleware"


def auth(token):
    return {"HTTP_AUTHORIZATION": f"JWT {token}"}


def refused_early(response):
    """Only the early refusal sets this fixed policy; the site-wide one comes from the CSP middleware."""
    return response.get("Content-Security-Policy") == middleware.REFUSAL_CSP


def test_the_early_refusal_sits_before_sessions_authentication_and_the_csp_middleware():
    stack = settings.MIDDLEWARE
    position = stack.index(EARLY)
    for later in (
        "security.middleware.CSPMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "axes.middleware.AxesMiddleware",
    ):
        assert stack.index(later) > position
    # The request id and access line, and the security headers, still wrap the refusal.
    assert stack.index("artemis_portal.middleware.RequestIdMiddleware") < position
    assert stack.index("django.middleware.security.SecurityMiddleware") < position


@pytest.mark.parametrize("path", ["/api/bare", "/mixin/page/", "/connect/identity-proof/"])
def test_a_forged_issuer_is_refused_early_on_every_kind_of_protected_view(client, path):
    response = client.get(path, **auth(forged_token("forged-early", url=path)))
    assert response.status_code == 401
    assert refused_early(response)
    assert response["X-Frame-Options"] == "DENY"
    assert "no-store" in response["Cache-Control"]
    assert response["X-Request-ID"]  # the request id middleware still wraps it


def test_the_early_refusal_answers_exactly_what_the_views_check_answers(client, settings, caplog):
    token = forged_token("forged-same-answer")
    with caplog.at_level(logging.WARNING, logger="artemis.connect"):
        early = client.get("/api/bare", **auth(token))
    early_log = [r.getMessage() for r in caplog.records if r.name == "artemis.connect"]
    caplog.clear()
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if name != EARLY]
    tenant_cache.clear_local()
    with caplog.at_level(logging.WARNING, logger="artemis.connect"):
        late = Client().get("/api/bare", **auth(token))  # a new client loads the changed stack
    late_log = [r.getMessage() for r in caplog.records if r.name == "artemis.connect"]
    assert not refused_early(late)
    assert (early.status_code, early.json(), early["WWW-Authenticate"]) == (
        late.status_code,
        late.json(),
        late["WWW-Authenticate"],
    )
    assert early["Cache-Control"] == late["Cache-Control"]
    assert (
        early_log
        == late_log
        == ["connect auth failed reason=tenant client_key=forged-same-answer account_id=-"]
    )


def test_a_valid_token_passes_through_and_is_served(client):
    tenant = RegistrationFactory()
    response = client.get("/api/bare", **auth(request_token(tenant, url="/api/bare")))
    assert response.status_code == 200
    assert response.json()["client_key"] == tenant.client_key


def test_a_valid_token_in_the_query_string_passes_through(client):
    tenant = RegistrationFactory()
    response = client.get("/api/bare", {"jwt": request_token(tenant, url="/api/bare")})
    assert response.status_code == 200


@pytest.mark.parametrize("state", ["disabled", "uninstalled"], ids=["disabled tenant", "uninstalled tenant"])
def test_a_real_tenant_in_any_state_is_left_to_the_views_check(client, state):
    tenant = RegistrationFactory(state=state)
    response = client.get("/api/bare", **auth(request_token(tenant, url="/api/bare")))
    assert response.status_code == 401
    assert not refused_early(response)
    assert "not installed or not enabled" in response.json()["error"]


def test_a_blocked_tenant_is_left_to_the_views_check(client):
    from django.utils import timezone

    tenant = RegistrationFactory(blocked_at=timezone.now())
    response = client.get("/api/bare", **auth(request_token(tenant, url="/api/bare")))
    assert response.status_code == 401
    assert not refused_early(response)


def test_a_forged_issuer_on_a_page_that_is_not_connect_protected_is_not_refused(client):
    # The public request form ignores a stray ?jwt=: it is no Connect page.
    response = client.get("/requests/new/", {"jwt": forged_token("forged-elsewhere")})
    assert response.status_code == 200
    assert not refused_early(response)


@pytest.mark.parametrize(
    "header",
    ["JWT not-a-token", "JWT a.b.c", "Bearer abc"],
    ids=["malformed", "undecodable", "another scheme"],
)
def test_malformed_tokens_and_other_schemes_get_the_views_own_reason(client, header):
    response = client.get("/api/bare", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert not refused_early(response)


def test_an_rs256_token_naming_no_tenant_gets_the_algorithm_reason_not_the_tenant_one(client, rsa_key):
    import time

    import jwt as pyjwt

    now = int(time.time())
    claims = {"iss": "forged-rs", "iat": now, "exp": now + 60}
    token = pyjwt.encode(claims, rsa_key.private, algorithm="RS256")
    response = client.get("/api/bare", **auth(token))
    assert response.status_code == 401
    assert not refused_early(response)
    assert "HS256" in response.json()["error"]


def test_a_site_installed_after_its_key_was_refused_is_served_at_once_in_this_process(client):
    assert client.get("/api/bare", **auth(forged_token("late-site"))).status_code == 401
    tenant = RegistrationFactory(client_key="late-site")
    tenant_cache.forget("late-site")  # what install() does
    response = client.get("/api/bare", **auth(request_token(tenant, url="/api/bare")))
    assert response.status_code == 200


def test_a_repeated_forged_issuer_costs_no_query_and_never_opens_a_session(client, django_assert_num_queries):
    token = forged_token("forged-repeat")
    client.get("/api/bare", **auth(token))
    with django_assert_num_queries(0):
        for _ in range(5):
            response = client.get("/api/bare", **auth(token))
            assert response.status_code == 401
            assert "Set-Cookie" not in response and not response.cookies


def test_the_table_of_protected_paths_is_bounded():
    assert middleware._protected.cache_info().maxsize == middleware.PROTECTED_PATHS_CACHE


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.text(max_size=300).map(lambda text: "JWT " + text),
    query=st.text(max_size=200),
)
def test_any_authorization_header_or_query_on_a_protected_view_is_a_401_never_a_500(client, header, query):
    from urllib.parse import quote

    for kwargs in ({"HTTP_AUTHORIZATION": header}, {"QUERY_STRING": "jwt=" + quote(query)}):
        response = client.get("/api/bare", **kwargs)
        assert response.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{}, {"Cache-Control": "public, max-age=600"}, {"Expires": "Thu, 01 Jan 2037 00:00:00 GMT"}],
    ids=["fresh response", "with cache-control", "with expires"],
)
def test_never_cache_writes_exactly_what_djangos_add_never_cache_headers_writes(headers):
    import time_machine
    from django.http import HttpResponse
    from django.utils.cache import add_never_cache_headers

    from registrations.jwt import never_cache

    with time_machine.travel(1_800_000_000, tick=False):
        ours, djangos = HttpResponse(headers=headers), HttpResponse(headers=headers)
        never_cache(ours)
        add_never_cache_headers(djangos)
    assert dict(ours.headers) == dict(djangos.headers)
