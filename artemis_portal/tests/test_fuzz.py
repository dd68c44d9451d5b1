"""Fuzzing every public and Connect endpoint: arbitrary methods, headers, query strings, bodies and tokens.

Whatever arrives, the portal answers with a status below 500, never shows a traceback or Django's debug
text, and never puts a secret in a response or a log line: the tenants' shared secrets, SECRET_KEY,
FERNET_KEYS, BACKUP_KEYS, a status or transfer token the request did not carry, or the requester's email
to anyone who did not bring their status token (or the address itself).

Example counts come from the hypothesis profile in conftest.py (CI: the default profile).
"""

# The Connect fixtures are imported from registrations/tests/conftest.py and requested by name.
# ruff: noqa: F811

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from urllib.parse import quote, unquote_plus, urlencode

import jwt as pyjwt
import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artemis_portal.logging import RedactingFilter
from dsr_requests import roles, services, tokens
from dsr_requests.models import RequestState, RequestType, StaffQuestion, TransferTo
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory, approved_request
from registrations.models import Registration
from registrations.tests.conftest import (  # noqa: F401 (fixtures used by name)
    APP_BASE_URL,
    APP_KEY,
    connect_settings,
    key_service,
    other_rsa_key,
    rsa_key,
)
from registrations.tests.factories import RegistrationFactory
from registrations.tests.forge_fixtures import _jwks_certificate, forge_jwks  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

EMAIL = "fuzz.requester@example.org"
KID = "fuzz-kid-1"
FUZZ = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None
)

# Every URL pattern outside the admin, as written in the URLconfs; the enumeration test below fails when a
# new one is added without being fuzzed here.
FUZZED_ROUTES = {
    "",
    "healthz",
    "atlassian-connect.json",
    "connect/installed",
    "connect/uninstalled",
    "connect/enabled",
    "connect/disabled",
    "connect/identity-proof/",
    "requests/new/",
    "requests/sent/",
    "requests/confirm/",
    "requests/status/",
    "requests/renew/",
    "requests/status/<str:token>/",
    "requests/status/<str:token>/code/",
    "requests/status/<str:token>/document/",
    "requests/status/<str:token>/answer/",
    "requests/status/<str:token>/withdraw/",
    "requests/status/<str:token>/download-code/",
    "requests/status/<str:token>/download/",
    "requests/transfer/<str:token>/",
    "forge/events/",
    "forge/identity-proof/",
}
DEBUG_TEXT = (
    b"Traceback",
    b"Exception Value",
    b"Request Method:",
    b"django.core",
    b"django.db",
    b'File "/',
    b"DEBUG = True",
    b"You're seeing this error because you have",
    b"OperationalError",
    b"ProgrammingError",
    b"IntegrityError",
)


def _routes(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def test_every_public_and_connect_url_pattern_is_fuzzed():
    routes = {r for r in _routes(get_resolver().url_patterns) if not r.startswith("admin/")}
    assert routes == FUZZED_ROUTES


# --- the world being fuzzed: a tenant, a signed-install key, requests with status pages, exports ---------


class World:
    """Valid identifiers to build near-valid requests from, and the secrets that must never leak."""


@pytest.fixture
def world(settings, key_service, rsa_key, forge_jwks, django_capture_on_commit_callbacks, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.DSR_BEHIND_PROXY = True  # so X-Forwarded-For is parsed
    for name in ("DSR_RATE_SUBMIT_PER_IP", "DSR_RATE_STATUS_PER_IP", "DSR_RATE_CODE_PER_ACCOUNT"):
        setattr(settings, name, "1000000/60")
    settings.DSR_RATE_SUBMIT_PER_EMAIL = "1000000/60"
    key_service.keys[KID] = rsa_key.public_pem
    w = World()
    w.tenant = RegistrationFactory(state=Registration.State.ENABLED)
    w.disabled = RegistrationFactory(state=Registration.State.DISABLED)
    approver = StaffUserFactory(roles=[roles.APPROVER])
    w.copy, w.status_token = approved_request(RequestType.COPY, approver=approver, email=EMAIL)
    transfer, w.transfer_status_token = approved_request(
        RequestType.TRANSFER,
        approver=approver,
        email=EMAIL,
        transfer_to=TransferTo.ORGANISATION,
        transfer_email="dpo@receiver.example",
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.start_fulfilment(rights_request=w.copy, actor=approver)
        services.start_fulfilment(rights_request=transfer, actor=approver)
    w.transfer_token = next(
        m.group(1)
        for message in mail.outbox
        if (m := re.search(r"/requests/transfer/([0-9a-f]+)/", message.body))
    )
    mail.outbox.clear()
    w.confirm_token = tokens.confirmation_token(w.copy)
    # A request still proving identity (uploads and account codes apply), with a question from staff.
    w.verifying_token, token_hash = tokens.new_status_token()
    verifying = RightsRequestFactory(
        state=RequestState.VERIFYING,
        email=EMAIL,
        email_confirmed_at=timezone.now(),
        status_token_hash=token_hash,
    )
    w.question = StaffQuestion.objects.create(request=verifying, question="Which site?", asked_by=approver)
    w.rsa_key = rsa_key
    from django.conf import settings as django_settings

    w.secrets = {
        "shared secret": w.tenant.shared_secret,
        "disabled tenant's shared secret": w.disabled.shared_secret,
        "SECRET_KEY": django_settings.SECRET_KEY,
        **{f"FERNET_KEYS[{i}]": str(k) for i, k in enumerate(django_settings.FERNET_KEYS)},
        **{f"BACKUP_KEYS[{i}]": _text(k) for i, k in enumerate(django_settings.BACKUP_KEYS)},
    }
    # May appear only in the answer to a request that carried them (the requester's own status page).
    w.carried_only = {
        "status token": w.status_token,
        "transfer request's status token": w.transfer_status_token,
        "transfer token": w.transfer_token,
        "verifying request's status token": w.verifying_token,
    }
    return w


def _text(key):
    return key.decode() if isinstance(key, bytes) else str(key)


# --- strategies --------------------------------------------------------------------------------------------

METHODS = st.sampled_from(["GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND"])
SHORT_TEXT = st.text(max_size=40)
ODD_VALUES = st.one_of(
    SHORT_TEXT,
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.lists(SHORT_TEXT, max_size=3),
    st.dictionaries(SHORT_TEXT, SHORT_TEXT, max_size=2),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | SHORT_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(SHORT_TEXT, children, max_size=4),
    max_leaves=12,
)
FORM_FIELDS = st.sampled_from(
    [
        "csrfmiddlewaretoken",
        "request_type",
        "name",
        "email",
        "details",
        "site_url",
        "concerns",
        "transfer_to",
        "transfer_email",
        "country",
        "website",
        "code",
        "answer",
        "question",
        "confirm",
        "token",
        "jwt",
    ]
)
FORM_VALUES = st.one_of(
    SHORT_TEXT,
    st.sampled_from(
        ["review", "copy", "delete", "transfer", "on", "1", "-1", "9" * 30, EMAIL, "https://x.y"]
    ),
)
TOKEN_KINDS = st.sampled_from(
    [
        "none",
        "garbage",
        "valid",
        "context-qsh",
        "wrong-key",
        "expired",
        "wrong-qsh",
        "alg-none",
        "rs256-confusion",
        "rs256-signed",
        "rs256-wrong-key",
        "odd-claims",
        "odd-header",
        "disabled-tenant",
        "not-base64",
    ]
)


def _b64(value):
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _qsh(method, path, query=""):
    path = path.rstrip("/") or "/"
    pairs = sorted(
        p.split("=", 1) if "=" in p else [p, ""] for p in query.split("&") if p and not p.startswith("jwt=")
    )
    canonical = "&".join(f"{k}={v}" for k, v in pairs)
    return hashlib.sha256(f"{method}&{path}&{canonical}".encode()).hexdigest()


def make_token(world, kind, method, path, query, draw_claims, lifecycle_client_key):
    """A token of ``kind`` for this request: from valid to structurally valid but wrong in one way."""
    tenant = world.disabled if kind == "disabled-tenant" else world.tenant
    now = int(time.time())
    claims = {
        "iss": lifecycle_client_key or tenant.client_key,
        "sub": f"557058:{uuid.uuid4()}",
        "iat": now,
        "exp": now + 120,
        "qsh": _qsh(method, path, query),
    }
    if kind == "garbage":
        return draw_claims["garbage"]
    if kind == "not-base64":
        return "eyJ!!!." + draw_claims["garbage"] + ".@@"
    if kind == "context-qsh":
        claims["qsh"] = "context-qsh"
    if kind == "expired":
        claims["exp"] = now - 3600
    if kind == "wrong-qsh":
        claims["qsh"] = hashlib.sha256(b"GET&/elsewhere&").hexdigest()
    if kind == "odd-claims":
        claims.update(draw_claims["claims"])
    secret = tenant.shared_secret
    if kind == "wrong-key":
        return pyjwt.encode(claims, "w" * 40, algorithm="HS256")
    if kind == "alg-none":
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    if kind == "rs256-confusion":
        # RS256 in the header, HMAC'd with the tenant's secret (as if the secret were the public key).
        signing_input = f"{_b64({'alg': 'RS256', 'typ': 'JWT', 'kid': KID})}.{_b64(claims)}"
        signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"
    if kind in ("rs256-signed", "rs256-wrong-key"):
        claims["aud"] = APP_BASE_URL
        key = world.rsa_key.private if kind == "rs256-signed" else draw_claims["other_rsa_key"].private
        return pyjwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})
    header = draw_claims["header"] if kind == "odd-header" else {"alg": "HS256", "typ": "JWT"}
    return _hs256(header, claims, secret)


def _hs256(header, claims, secret):
    """Sign by hand: PyJWT refuses to encode some of the odd claims this test sends on purpose."""
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


ODD_CLAIMS = st.dictionaries(
    st.sampled_from(["iss", "sub", "exp", "iat", "nbf", "qsh", "aud", "context"]), ODD_VALUES, max_size=3
)
ODD_HEADERS = st.dictionaries(
    st.sampled_from(["alg", "typ", "kid", "crit", "b64", "jku"]),
    st.one_of(st.sampled_from(["HS256", "none", "RS256", "HS512", "EdDSA"]), ODD_VALUES),
    max_size=4,
).map(lambda h: {"alg": "HS256", **h})


def _path_token(world, which, fuzzed):
    return {
        "status": world.status_token,
        "transfer-status": world.transfer_status_token,
        "transfer": world.transfer_token,
        "fuzzed": quote(fuzzed, safe=""),
        "hex": "0" * 64,
    }[which]


ENDPOINTS = st.sampled_from(sorted(FUZZED_ROUTES))
PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)


@st.composite
def requests(draw, world):
    """One arbitrary request: (method, path, query, body, content type, headers)."""
    route = draw(ENDPOINTS)
    token = _path_token(
        world,
        draw(st.sampled_from(["status", "transfer-status", "transfer", "fuzzed", "hex"])),
        draw(st.text(min_size=1, max_size=80)),
    )
    path = "/" + route.replace("<str:token>", token)
    method = draw(METHODS)

    query_kind = draw(st.sampled_from(["none", "pairs", "raw", "confirm"]))
    if query_kind == "pairs":
        query = urlencode(draw(st.lists(st.tuples(FORM_FIELDS | SHORT_TEXT, FORM_VALUES), max_size=4)))
    elif query_kind == "raw":
        query = quote(draw(st.text(max_size=60)), safe="=&")
    elif query_kind == "confirm":
        query = urlencode({"token": draw(st.sampled_from([world.confirm_token, world.confirm_token[:-3]]))})
    else:
        query = ""

    body_kind = draw(st.sampled_from(["empty", "json", "lifecycle", "form", "multipart", "binary"]))
    lifecycle_client_key = None
    if body_kind == "json":
        body, content_type = json.dumps(draw(JSON_VALUES)).encode(), "application/json"
    elif body_kind == "lifecycle":
        event = draw(st.sampled_from(["installed", "uninstalled", "enabled", "disabled"]))
        fields = {
            "key": draw(st.sampled_from([APP_KEY, "other.app"])),
            "clientKey": draw(st.sampled_from([world.tenant.client_key, str(uuid.uuid4())])),
            "eventType": event,
            "sharedSecret": draw(st.sampled_from(["s" * 40, "short"])),
            "baseUrl": draw(st.sampled_from(["https://fuzz.atlassian.net/wiki", "http://x", "javascript:x"])),
            "productType": "confluence",
        }
        fields.update(draw(st.dictionaries(st.sampled_from(sorted(fields)), ODD_VALUES, max_size=2)))
        lifecycle_client_key = fields["clientKey"] if isinstance(fields["clientKey"], str) else None
        body, content_type = json.dumps(fields).encode(), "application/json"
    elif body_kind == "form":
        body = urlencode(draw(st.lists(st.tuples(FORM_FIELDS, FORM_VALUES), max_size=6))).encode()
        content_type = "application/x-www-form-urlencoded"
    elif body_kind == "multipart":
        data = dict(draw(st.lists(st.tuples(FORM_FIELDS, FORM_VALUES), max_size=4)))
        if draw(st.booleans()):
            data["document"] = SimpleUploadedFile(
                draw(st.sampled_from(["id.pdf", "id.png", "../../x", "a" * 300])),
                draw(st.binary(max_size=200)),
                content_type=draw(st.sampled_from(["application/pdf", "image/png", "text/html"])),
            )
        body, content_type = encode_multipart(BOUNDARY, data), MULTIPART_CONTENT
    elif body_kind == "binary":
        body = draw(st.binary(max_size=300))
        content_type = draw(
            st.sampled_from(
                [
                    "application/octet-stream",
                    "application/json",
                    "multipart/form-data",
                    "text/plain; charset=x",
                ]
            )
            | SHORT_TEXT
        )
    else:
        body, content_type = b"", draw(st.sampled_from(["", "application/json"]))

    headers = {}
    token_kind = draw(TOKEN_KINDS)
    if token_kind != "none":
        claims = {
            "garbage": draw(st.text(max_size=60)),
            "claims": draw(ODD_CLAIMS),
            "header": draw(ODD_HEADERS),
            "other_rsa_key": world.other_rsa_key,
        }
        jwt = make_token(world, token_kind, method, path, query, claims, lifecycle_client_key)
        if draw(st.booleans()):
            headers["Authorization"] = draw(st.sampled_from(["JWT ", "jwt ", "Bearer ", "JWT  ", ""])) + jwt
        else:
            query = (query + "&" if query else "") + urlencode({"jwt": jwt})
    for name in ("X-Forwarded-For", "X-Request-ID", "Accept", "Cookie"):
        if draw(st.booleans()):
            headers[name] = draw(
                st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
            )
    host = draw(
        st.sampled_from([None, "privacy.example.test", "evil.example", "a" * 300, "[::1]:80", "x:y:z"])
    )
    if host:
        headers["Host"] = host
    return method, path, query, body, content_type, headers


class LogLines(logging.Handler):
    """Every log line as production would write it (through the project's redacting filter)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.raw, self.lines = [], []
        self.redact = RedactingFilter()
        self.formatter_ = logging.Formatter("%(levelname)s %(name)s %(message)s")

    def emit(self, record):
        try:
            raw = record.getMessage()
        except Exception:
            raw = str(record.msg)
        self.raw.append(raw)
        copy = logging.makeLogRecord(record.__dict__)
        self.redact.filter(copy)
        line = self.formatter_.format(copy)
        if copy.exc_text:
            line += "\n" + copy.exc_text
        self.lines.append(line)


@pytest.fixture
def log_lines():
    handler = LogLines()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)


def _send(client, method, path, query, body, content_type, headers):
    extra = {}
    if "Host" in headers:
        extra["HTTP_HOST"] = headers.pop("Host")
    response = client.generic(
        method,
        path + ("?" + query if query else ""),
        data=body,
        content_type=content_type,
        headers=headers,
        **extra,
    )
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return response, content


def check_response(world, request, response, content, log_lines):
    method, path, query, body, content_type, headers = request
    # A form body is URL-encoded; a page may echo what the form carried (the code field, say), decoded.
    text = body.decode("latin-1")
    carried = (path + query + text + unquote_plus(text) + json.dumps(headers)).lower()
    assert response.status_code < 500, (response.status_code, content[:500])
    for marker in DEBUG_TEXT:
        assert marker not in content, (marker, content[:1000])
    answer = content.decode("latin-1") + json.dumps(dict(response.items()))
    for name, secret in world.secrets.items():
        assert secret not in answer, f"{name} in the response"
        # Not even before the redacting filter: code must not hand a key to a logger in the first place.
        for line in log_lines.raw + log_lines.lines:
            assert secret not in line, f"{name} in a log line: {line[:200]}"
    for name, secret in world.carried_only.items():
        if secret.lower() not in carried:
            assert secret not in answer, f"{name} in the response to a request that did not carry it"
        for line in log_lines.lines:
            assert secret not in line, f"{name} in a log line: {line[:200]}"
    for line in log_lines.lines:
        assert EMAIL not in line, f"the requester's email in a log line: {line[:200]}"
    # The requester (status token) and the receiver of a transfer (its one-time link) are shown the data.
    may_see_email = EMAIL in carried or any(
        t in carried
        for t in (
            world.status_token,
            world.transfer_status_token,
            world.transfer_token,
            world.verifying_token,
        )
    )
    if not may_see_email:
        assert EMAIL not in answer, "the requester's email shown to someone without their status token"


@FUZZ
@given(data=st.data())
def test_no_request_to_any_endpoint_gets_a_500_a_traceback_or_a_secret(world, log_lines, data, other_rsa_key):
    world.other_rsa_key = other_rsa_key
    request = data.draw(requests(world))
    log_lines.raw.clear()
    log_lines.lines.clear()
    client = Client(raise_request_exception=False)
    response, content = _send(client, *request[:5], dict(request[5]))
    check_response(world, request, response, content, log_lines)


@FUZZ
@given(data=st.data())
def test_connect_page_and_lifecycle_answer_near_valid_tokens_with_401_never_500(
    world, log_lines, data, other_rsa_key
):
    """The JWT-protected endpoints, with every token variant and the lifecycle bodies Atlassian sends."""
    world.other_rsa_key = other_rsa_key
    event = data.draw(st.sampled_from(["identity-proof/", "installed", "uninstalled", "enabled", "disabled"]))
    method = "GET" if event == "identity-proof/" and data.draw(st.booleans()) else "POST"
    path = f"/connect/{event}"
    client_key = world.tenant.client_key
    body = {"key": APP_KEY, "clientKey": client_key, "eventType": event, "productType": "confluence"}
    if event == "installed":
        body.update(sharedSecret=world.tenant.shared_secret, baseUrl="https://fuzz.atlassian.net/wiki")
    if event == "identity-proof/":
        raw_body = urlencode({"code": data.draw(FORM_VALUES)}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        raw_body, content_type = json.dumps(body).encode(), "application/json"
    kind = data.draw(TOKEN_KINDS)
    claims = {
        "garbage": data.draw(st.text(max_size=60)),
        "claims": data.draw(ODD_CLAIMS),
        "header": data.draw(ODD_HEADERS),
        "other_rsa_key": other_rsa_key,
    }
    token = make_token(world, kind, method, path, "", claims, client_key)
    headers = {"Authorization": f"JWT {token}"} if kind != "none" else {}
    request = (method, path, "", raw_body, content_type, headers)
    log_lines.raw.clear()
    log_lines.lines.clear()
    response, content = _send(Client(raise_request_exception=False), *request[:5], dict(headers))
    check_response(world, request, response, content, log_lines)
    if kind not in ("valid", "context-qsh", "rs256-signed", "odd-claims", "odd-header"):
        assert response.status_code in (400, 401, 404, 405), (kind, response.status_code, content[:300])
    # An install may carry the tenant's secret in its body; it must not come back.
    assert world.tenant.shared_secret.encode() not in content


FILE_CONTENT = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: b"%PDF-1.7\n" + b),
    st.binary(max_size=200).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.binary(max_size=200).map(lambda b: b"\xff\xd8\xff\xe0" + b),
)


@FUZZ
@given(data=st.data())
def test_status_page_actions_with_a_valid_link_never_500_or_leak(world, log_lines, data):
    """The requester's own actions (code, upload, answer, withdraw, download) with arbitrary form input."""
    token = data.draw(
        st.sampled_from([world.status_token, world.transfer_status_token, world.verifying_token])
    )
    action = data.draw(
        st.sampled_from(["", "code/", "document/", "answer/", "withdraw/", "download-code/", "download/"])
    )
    values = FORM_VALUES | st.sampled_from(
        [str(world.question.pk), str(world.question.pk + 1000), "0", "1e3"]
    )
    fields = dict(data.draw(st.lists(st.tuples(FORM_FIELDS, values), max_size=5)))
    if data.draw(st.booleans()):
        fields["document"] = SimpleUploadedFile(
            data.draw(st.sampled_from(["id.pdf", "id.png", "id.jpg", "id", "x" * 255 + ".pdf"])),
            data.draw(FILE_CONTENT),
            content_type=data.draw(
                st.sampled_from(["application/pdf", "image/png", "image/jpeg", "text/html"])
            ),
        )
        body, content_type = encode_multipart(BOUNDARY, fields), MULTIPART_CONTENT
    else:
        body, content_type = urlencode(fields).encode(), "application/x-www-form-urlencoded"
    method = data.draw(st.sampled_from(["POST", "POST", "GET"]))
    request = (method, f"/requests/status/{token}/{action}", "", body, content_type, {})
    log_lines.raw.clear()
    log_lines.lines.clear()
    response, content = _send(Client(raise_request_exception=False), *request[:5], {})
    check_response(world, request, response, content, log_lines)
