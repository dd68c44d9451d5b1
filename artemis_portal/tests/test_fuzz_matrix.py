"""Explicit coverage that a sampled fuzz run cannot promise (SECURITY.md, "Security round two", item 8).

``test_fuzz.py`` draws endpoints and token kinds at random, so a bug on one endpoint with one kind of token
is found only in the runs that happen to draw that pair (a one-line bug accepting any ``qsh`` on the page
that takes context tokens was caught in 2 runs out of 9). Here:

* every endpoint × every token kind is sent once, deterministically, and the JWT-protected endpoints must
  answer each kind with the exact status (and, for a 401, the reason) it deserves;
* every URL pattern the resolver knows (enumerated, so a new endpoint is covered without editing this
  file) gets its own bounded hypothesis run with random methods, headers, query strings and bodies.
"""

# ruff: noqa: F811 (fixtures imported by name)

import json
from urllib.parse import quote, urlencode

import pytest
from django.test import Client
from django.urls import get_resolver
from hypothesis import given, settings
from hypothesis import strategies as st

from artemis_portal.tests.test_fuzz import (  # noqa: F401 (fixtures used by name)
    FUZZ,
    METHODS,
    SHORT_TEXT,
    TOKEN_KINDS,
    _path_token,
    _routes,
    _send,
    check_response,
    connect_settings,
    key_service,
    log_lines,
    make_token,
    other_rsa_key,
    rsa_key,
    world,
)
from registrations.models import Registration
from registrations.tests.conftest import APP_KEY
from registrations.tests.forge_fixtures import _jwks_certificate, forge_jwks  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

KINDS = list(TOKEN_KINDS.elements)
PUBLIC_ROUTES = sorted(r for r in _routes(get_resolver().url_patterns) if not r.startswith("admin/"))

# What the Connect page (HS256 request tokens, context-qsh allowed) answers each kind with, and the reason.
PAGE_EXPECTED = {
    "none": (401, "required"),
    "garbage": (401, "malformed"),
    "not-base64": (401, "malformed"),
    "valid": (200, None),
    "context-qsh": (200, None),
    "wrong-key": (401, "signature"),
    "expired": (401, "expired"),
    "wrong-qsh": (401, "qsh claim does not match"),
    "alg-none": (401, "HS256"),
    "rs256-confusion": (401, "HS256"),
    "rs256-signed": (401, "HS256"),
    "rs256-wrong-key": (401, "HS256"),
    "odd-claims": (401, "not valid"),
    "odd-header": (401, "not valid"),
    "disabled-tenant": (401, "not installed or not enabled"),
}
# Lifecycle callbacks: what each kind gets. installed/uninstalled need a signed (RS256) token;
# enabled/disabled take the tenant's HS256 token (or a signed one).
SIGNED_ONLY = {"rs256-signed": 204}
EITHER = {"valid": 204, "rs256-signed": 204}
LIFECYCLE_OK = {"installed": SIGNED_ONLY, "uninstalled": SIGNED_ONLY, "enabled": EITHER, "disabled": EITHER}
# Fixed "random" parts, so that each pair means the same thing on every run.
FIXED = {"garbage": "not a token", "claims": {"exp": "tomorrow"}, "header": {"alg": "HS256", "crit": ["b64"]}}


def test_the_matrix_names_every_token_kind():
    assert set(PAGE_EXPECTED) == set(KINDS)


def _request(world, route, kind, method):
    """A plausible request to ``route`` carrying a ``kind`` token in the Authorization header."""
    path = "/" + route.replace("<str:token>", world.status_token)
    event = route.removeprefix("connect/")
    client_key = None
    if event in LIFECYCLE_OK:
        client_key = world.tenant.client_key
        body = {"key": APP_KEY, "clientKey": client_key, "eventType": event}
        if event == "installed":
            body.update(
                sharedSecret=world.tenant.shared_secret,
                baseUrl="https://fuzz.atlassian.net/wiki",
                productType="confluence",
            )
        raw, content_type = json.dumps(body).encode(), "application/json"
    else:
        raw, content_type = b"", ""
    claims = {**FIXED, "other_rsa_key": world.other_rsa_key}
    token = make_token(world, kind, method, path, "", claims, client_key)
    headers = {"Authorization": f"JWT {token}"} if kind != "none" else {}
    return (method, path, "", raw, content_type, headers)


def test_every_endpoint_with_every_token_kind_gets_the_answer_it_deserves(world, log_lines, other_rsa_key):
    """Each (endpoint, token kind) pair once; the Connect page and the lifecycle callbacks exactly."""
    world.other_rsa_key = other_rsa_key
    lifecycle_last = sorted(PUBLIC_ROUTES, key=lambda r: r.removeprefix("connect/") in LIFECYCLE_OK)
    for route in lifecycle_last:
        event = route.removeprefix("connect/")
        for kind in KINDS:
            if event in LIFECYCLE_OK:
                # A fresh, enabled tenant each time: an earlier pair may have disabled or uninstalled it.
                Registration.objects.filter(pk=world.tenant.pk).update(
                    state=Registration.State.ENABLED, base_url="https://fuzz.atlassian.net/wiki"
                )
            method = "POST" if event in LIFECYCLE_OK else "GET"
            request = _request(world, route, kind, method)
            log_lines.raw.clear()
            log_lines.lines.clear()
            response, content = _send(Client(raise_request_exception=False), *request[:5], dict(request[5]))
            check_response(world, request, response, content, log_lines)
            where = (route, kind, response.status_code, content[:200])
            if route == "connect/identity-proof/":
                status, reason = PAGE_EXPECTED[kind]
                assert response.status_code == status, where
                if reason:
                    assert reason.lower() in response.json()["error"].lower(), where
            elif event in LIFECYCLE_OK:
                assert response.status_code == LIFECYCLE_OK[event].get(kind, 401), where


@pytest.mark.parametrize("route", PUBLIC_ROUTES)
@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_every_url_pattern_answers_random_input_without_a_5xx_or_a_traceback(
    world, log_lines, other_rsa_key, route, data
):
    """Random method, query, body and headers to each route the resolver knows; nothing is a 5xx."""
    world.other_rsa_key = other_rsa_key
    token = _path_token(
        world,
        data.draw(st.sampled_from(["status", "transfer-status", "transfer", "fuzzed", "hex"])),
        data.draw(st.text(min_size=1, max_size=40)),
    )
    path = "/" + route.replace("<str:token>", token)
    method = data.draw(METHODS)
    query = data.draw(
        st.one_of(
            st.just(""),
            st.lists(st.tuples(SHORT_TEXT, SHORT_TEXT), max_size=4).map(urlencode),
            st.text(max_size=60).map(lambda q: quote(q, safe="=&")),
        )
    )
    body = data.draw(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    content_type = data.draw(
        st.sampled_from(["", "application/json", "application/x-www-form-urlencoded", "multipart/form-data"])
        | SHORT_TEXT
    )
    headers = {}
    for name in ("Authorization", "X-Forwarded-For", "Cookie", "Accept", "X-Request-ID", "X-CSRFToken"):
        if data.draw(st.booleans()):
            headers[name] = data.draw(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126)))
    request = (method, path, query, body, content_type, headers)
    log_lines.raw.clear()
    log_lines.lines.clear()
    response, content = _send(Client(raise_request_exception=False), *request[:5], dict(headers))
    check_response(world, request, response, content, log_lines)
