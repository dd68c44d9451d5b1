"""Atlassian Connect JWT: the query string hash, inbound request authentication, outbound signing.

Atlassian signs every call to the app with a JWT: HS256 with the tenant's shared secret for page loads
and API calls (this module), RS256 with an Atlassian key for the signed install (``verify_install_token``,
keys from ``install_keys``). The token's ``qsh`` claim binds it to one request (method, path, query), so a
token lifted from one URL cannot be replayed against another; Connect page loads instead carry the literal
``context-qsh``, which only views marked ``allow_context_qsh`` accept.

Every failure raises ``ConnectAuthError`` with a short reason for the caller and a stable code for the
log; the decorator and mixin turn it into a 401. Nothing in here may raise anything else on bad input.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import jwt as pyjwt
from csp.constants import HEADER as CSP_HEADER
from csp.utils import build_policy
from django.conf import settings
from django.core.signals import setting_changed
from django.http import JsonResponse
from django.utils.cache import add_never_cache_headers
from django.utils.encoding import escape_uri_path
from django.utils.http import http_date
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables
from jwt.algorithms import HMACAlgorithm
from jwt.utils import base64url_decode

from registrations import base_urls, install_keys, services, tenant_cache
from registrations.identifiers import ACCOUNT_ID, CLIENT_KEY, log_value
from registrations.models import Registration

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from django.http import HttpRequest
    from django.http.response import HttpResponseBase
    from django_stubs_ext import StrOrPromise

logger = logging.getLogger("artemis.connect")

CONTEXT_QSH = "context-qsh"
# Connect tokens are a few hundred bytes; anything much larger is not one and is not worth parsing.
MAX_TOKEN_LENGTH = 8192
# More query parameters than any Connect URL sends; bounds the work an anonymous request can cause.
MAX_QUERY_FIELDS = 200
# States in which a tenant's pages and APIs may be used (Atlassian sends "enabled" right after "installed").
ACTIVE_STATES = frozenset({Registration.State.INSTALLED, Registration.State.ENABLED})


class ConnectAuthError(Exception):
    """A Connect JWT was missing or did not verify; ``message`` is safe to show, ``code`` to log."""

    status = 401

    def __init__(self, code: str, message: StrOrPromise) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ConnectContext:
    """What a verified request token establishes: the tenant (site) and the Atlassian account, if any."""

    tenant: Registration
    account_id: str | None
    claims: dict = field(repr=False)


# --- query string hash -------------------------------------------------------------------------------


def _encode(value: str) -> str:
    """RFC 3986 percent-encoding, spaces as ``%20`` (not ``+``), only unreserved characters left alone."""
    return quote(value, safe="~")


def canonical_path(path: str) -> str:
    """The canonical URI of Atlassian's spec: never empty, no trailing slash, ``&`` written ``%26``."""
    path = path.rstrip("/").replace("&", "%26")
    if not path.startswith("/"):
        path = "/" + path
    return path


def canonical_query(query: str) -> str:
    """Canonical query: ``jwt`` dropped, names sorted, each name's values sorted and joined with ``,``.

    Names and values are compared in their encoded form, as the issue's spec says. ``query`` is a raw
    query string (as received) or a mapping / list of pairs (as about to be sent).
    """
    if not isinstance(query, str):
        query = urlencode(query, doseq=True, quote_via=quote)
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise ConnectAuthError("query", _("Too many query parameters.")) from None
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        if name != "jwt":
            grouped.setdefault(_encode(name), []).append(_encode(value))
    return "&".join(f"{name}={','.join(sorted(values))}" for name, values in sorted(grouped.items()))


def canonical_request(method: str, path: str, query: str = "") -> str:
    """``METHOD&path&query`` as Atlassian hashes it; ``path`` is relative to the base URL it was sent to."""
    return f"{method.upper()}&{canonical_path(path)}&{canonical_query(query)}"


def canonical_query_string_hash(method: str, path: str, query: str = "") -> str:
    """The ``qsh`` claim for a request: SHA-256 (hex) of ``canonical_request(method, path, query)``."""
    return hashlib.sha256(canonical_request(method, path, query).encode()).hexdigest()


def app_relative_path_of(path: str) -> str:
    """``path`` (URL-encoded, from the site root) relative to ``APP_BASE_URL``, which may have a path."""
    base_path = urlsplit(settings.APP_BASE_URL).path.rstrip("/")
    if base_path and (path == base_path or path.startswith(base_path + "/")):
        path = path[len(base_path) :]
    return path


def app_relative_path(request: HttpRequest) -> str:
    """The request's path relative to ``APP_BASE_URL``, URL-encoded as it was sent."""
    return app_relative_path_of(escape_uri_path(request.path))


def request_qsh(request: HttpRequest) -> str:
    """The ``qsh`` a token for this incoming request must carry."""
    return canonical_query_string_hash(
        request.method or "", app_relative_path(request), request.META.get("QUERY_STRING", "")
    )


# --- inbound ------------------------------------------------------------------------------------------


def token_from_request(request: HttpRequest) -> str:
    """The raw token from ``Authorization: JWT <token>`` or, failing that, the ``jwt`` query parameter."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _sep, token = header.partition(" ")
        if scheme.lower() != "jwt" or not token.strip():
            raise ConnectAuthError("scheme", _("The Authorization header must be 'JWT <token>'."))
        token = token.strip()
    else:
        token = request.GET.get("jwt", "")
    if not token:
        raise ConnectAuthError("missing", _("A Connect JWT is required."))
    if len(token) > MAX_TOKEN_LENGTH:
        raise ConnectAuthError("malformed", _("The JWT is malformed."))
    return token


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, unverified: just enough to pick the key. Bad input is a 401, never a 500."""
    try:
        header_b64, payload_b64, _signature = token.split(".")
        header = json.loads(base64url_decode(header_b64))
        claims = json.loads(base64url_decode(payload_b64))
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise ConnectAuthError("malformed", _("The JWT is malformed.")) from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ConnectAuthError("malformed", _("The JWT is malformed."))
    return header, claims


def token_algorithm(request: HttpRequest) -> str | None:
    """The ``alg`` the request's token claims (unverified) or ``None``: only to choose which check applies."""
    try:
        return _unverified(token_from_request(request))[0].get("alg")
    except ConnectAuthError:
        return None


@sensitive_variables("token", "key")
def _verify(token: str, key: Any, algorithm: str, *, require: list[str]) -> dict[str, Any]:
    """Verify signature, ``exp`` (required) and the standard claims with PyJWT, algorithm pinned."""
    try:
        return pyjwt.decode(
            token,
            key,
            algorithms=[algorithm],
            leeway=settings.CONNECT_JWT_LEEWAY,
            # aud is checked by the caller where Atlassian sends one (the signed install).
            options={"require": require, "verify_aud": False},
        )
    except pyjwt.ExpiredSignatureError:
        raise ConnectAuthError("expired", _("The JWT has expired.")) from None
    except pyjwt.MissingRequiredClaimError as exc:
        raise ConnectAuthError("claims", _("The JWT lacks the '%s' claim.") % exc.claim) from None
    except pyjwt.InvalidSignatureError:
        raise ConnectAuthError("signature", _("The JWT signature does not verify.")) from None
    except (pyjwt.PyJWTError, ValueError, TypeError):
        raise ConnectAuthError("invalid", _("The JWT is not valid.")) from None


_HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@sensitive_variables("token", "secret")
def _verify_hs256(token: str, header: dict[str, Any], claims: dict[str, Any], secret: str) -> dict[str, Any]:
    """HS256 signature (PyJWT's HMAC primitive) and time claims, on the token already parsed once.

    PyJWT's generic ``decode`` re-parses the token and merges options on every call, which costs more
    than the check itself on this hot path (see docs/benchmarks.md); the rules are PyJWT's: ``exp``
    required and numeric, ``nbf``/``iat`` not in the future, all with ``CONNECT_JWT_LEEWAY``, and no
    ``crit`` or ``b64`` header extensions (which would change what is signed).
    """
    if "crit" in header or "b64" in header:
        raise ConnectAuthError("invalid", _("The JWT is not valid."))
    signing_input, _sep, signature = token.rpartition(".")
    try:
        raw_signature = base64url_decode(signature)
    except (ValueError, binascii.Error):
        raise ConnectAuthError("malformed", _("The JWT is malformed.")) from None
    if not _HS256.verify(signing_input.encode(), secret.encode(), raw_signature):
        raise ConnectAuthError("signature", _("The JWT signature does not verify."))
    now, leeway = time.time(), settings.CONNECT_JWT_LEEWAY
    for name in ("exp", "iss", "qsh"):
        if claims.get(name) is None:
            raise ConnectAuthError("claims", _("The JWT lacks the '%s' claim.") % name)
    if not all(_number(claims[name]) for name in ("exp", "nbf", "iat") if name in claims):
        raise ConnectAuthError("invalid", _("The JWT is not valid."))
    if claims["exp"] <= now - leeway:
        raise ConnectAuthError("expired", _("The JWT has expired."))
    if claims.get("nbf", 0) > now + leeway or claims.get("iat", 0) > now + leeway:
        raise ConnectAuthError("invalid", _("The JWT is not valid yet."))
    return claims


def _check_qsh(claims: dict[str, Any], request: HttpRequest, *, allow_context_qsh: bool) -> None:
    """The token's ``qsh`` must match this request, or be ``context-qsh`` where the view allows that."""
    qsh = claims.get("qsh")
    if not isinstance(qsh, str):
        raise ConnectAuthError("qsh", _("The JWT's qsh claim does not match the request."))
    if qsh == CONTEXT_QSH:
        if allow_context_qsh:
            return
        raise ConnectAuthError("context-qsh", _("A context JWT is not accepted here."))
    # A hash of the public request, not a secret: a plain comparison is fine (and total on any str).
    if qsh != request_qsh(request):
        raise ConnectAuthError("qsh", _("The JWT's qsh claim does not match the request."))


def _hs256_issuer(request: HttpRequest) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    """Token, header, unverified claims and client key of a request that claims an HS256 Connect token.

    Kept on the request once parsed: the early refusal parses first, the view's check reuses it.
    """
    parsed = getattr(request, "_connect_hs256_issuer", None)
    if parsed is not None:
        return parsed
    token = token_from_request(request)
    header, unverified = _unverified(token)
    if header.get("alg") != "HS256":
        raise ConnectAuthError("algorithm", _("Only HS256 JWTs are accepted."))
    client_key = unverified.get("iss")
    if not isinstance(client_key, str) or not CLIENT_KEY.fullmatch(client_key):
        raise ConnectAuthError("claims", _("The JWT lacks a valid 'iss' claim."))
    request._connect_hs256_issuer = parsed = (token, header, unverified, client_key)  # type: ignore[attr-defined]
    return parsed


def _tenant_refused() -> ConnectAuthError:
    return ConnectAuthError("tenant", _("The site is not installed or not enabled."))


def refuse_unknown_issuer(request: HttpRequest) -> JsonResponse | None:
    """The 401 for an HS256 token whose ``iss`` is no tenant at all; ``None`` in every other case.

    Exactly the response ``authenticate_request`` leads to (same reason, body, headers and log line),
    but decided from the tenant cache alone, so ``ConnectEarlyRefusalMiddleware`` can answer a forged
    issuer before the rest of the middleware stack. Anything else (no token, another algorithm, a known
    tenant in any state) is left to the view's full check, which is the only place a token is accepted.
    """
    try:
        _token, _header, claims, client_key = _hs256_issuer(request)
    except ConnectAuthError:
        return None
    if tenant_cache.exists(client_key):
        return None
    return auth_failure(request, _tenant_refused(), claims=claims)


def authenticate_request(
    request: HttpRequest, *, allow_context_qsh: bool = False, states: Collection[str] = ACTIVE_STATES
) -> ConnectContext:
    """Verify the request's HS256 Connect JWT and return a ``ConnectContext``.

    The tenant comes from the (cached) registry by the token's ``iss`` and must be in one of ``states``;
    its shared secret is the only key tried and HS256 the only algorithm, so neither ``alg: none`` nor an
    RS256 header can change how the signature is checked.
    """
    token, header, unverified, client_key = _hs256_issuer(request)
    tenant = tenant_cache.get(client_key)
    if tenant is None or tenant.state not in states or tenant.blocked_at is not None:
        raise _tenant_refused()
    claims = _verify_hs256(token, header, unverified, tenant.shared_secret)
    _check_qsh(claims, request, allow_context_qsh=allow_context_qsh)
    account_id = claims.get("sub") or None
    if account_id is not None and not (isinstance(account_id, str) and ACCOUNT_ID.fullmatch(account_id)):
        raise ConnectAuthError("claims", _("The JWT's 'sub' claim is not an account ID."))
    return ConnectContext(tenant=tenant, account_id=account_id, claims=claims)


def verify_install_token(request: HttpRequest, *, client_key: str) -> dict[str, Any]:
    """Verify a signed-install (RS256) lifecycle token for the body's ``client_key``; returns its claims.

    The key is fetched by the header's ``kid`` from ``CONNECT_INSTALL_KEYS_URL`` (cached); a key service
    that cannot answer raises ``install_keys.KeyServiceUnavailable`` (a 503, so Atlassian retries) rather
    than a ``ConnectAuthError``. ``aud`` must be our base URL and ``iss`` the body's ``clientKey``: the
    body is not signed, so this is what ties it to the token.
    """
    token = token_from_request(request)
    header, _claims = _unverified(token)
    if header.get("alg") != "RS256":
        raise ConnectAuthError("algorithm", _("Lifecycle callbacks must be signed with RS256."))
    kid = header.get("kid")
    if not isinstance(kid, str) or not install_keys.valid_kid(kid):
        raise ConnectAuthError("kid", _("The JWT has no valid 'kid' header."))
    public_key = install_keys.public_key(kid)
    if public_key is None:
        raise ConnectAuthError("kid", _("The JWT's signing key is unknown."))
    claims = _verify(token, public_key, "RS256", require=["exp", "iss", "qsh", "aud"])
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    expected = settings.APP_BASE_URL.rstrip("/")
    if not any(isinstance(aud, str) and aud.rstrip("/") == expected for aud in audiences):
        raise ConnectAuthError("aud", _("The JWT's audience is not this app."))
    if claims["iss"] != client_key:
        raise ConnectAuthError("iss", _("The JWT's issuer does not match the clientKey."))
    _check_qsh(claims, request, allow_context_qsh=False)
    return claims


# What ``add_never_cache_headers`` writes on a response with no caching headers yet.
NEVER_CACHE = "max-age=0, no-cache, no-store, must-revalidate, private"


def never_cache(response: HttpResponseBase) -> None:
    """Django's ``add_never_cache_headers``, without parsing and re-joining when nothing is set yet.

    Every Connect page and refusal calls it; Django's general version costs about as much as the HS256
    check (issue 19). A response that already has a ``Cache-Control`` or ``Expires`` gets Django's.
    """
    if "Cache-Control" in response or "Expires" in response:
        add_never_cache_headers(response)
        return
    response.headers["Expires"] = http_date(time.time())
    response.headers["Cache-Control"] = NEVER_CACHE


def auth_failure(
    request: HttpRequest, error: ConnectAuthError, *, claims: dict[str, Any] | None = None
) -> JsonResponse:
    """Log a failed authentication (client key and account ID only) and build the 401 response.

    ``claims`` are the token's unverified claims when the caller already decoded them.
    """
    if claims is None:
        try:
            _header, claims = _unverified(token_from_request(request))
        except ConnectAuthError:
            claims = {}
    logger.warning(
        "connect auth failed reason=%s client_key=%s account_id=%s",
        error.code,
        log_value(claims.get("iss")),
        log_value(claims.get("sub")),
    )
    response = JsonResponse({"error": str(error.message)}, status=error.status)
    response["WWW-Authenticate"] = "JWT"
    never_cache(response)
    return response


def _authenticate_view(request: Any, *, allow_context_qsh: bool) -> JsonResponse | None:
    """Shared body of the decorator and the mixin: ``None`` on success (``request.connect`` set)."""
    try:
        request.connect = authenticate_request(request, allow_context_qsh=allow_context_qsh)
    except ConnectAuthError as error:
        return auth_failure(request, error)
    return None


def _serve_counted(request: Any, module: str | None, serve: Callable[[], HttpResponseBase]) -> Any:
    """An authenticated request's page, framed for its tenant, its use counted while it renders."""
    with services.usage_counted(module=module or _module_for(request)):
        return _frame_for_tenant(request, serve())


def _module_for(request: HttpRequest) -> str:
    """Usage-count key of a view that did not name its module: its URL name."""
    match = request.resolver_match
    return (match.url_name if match and match.url_name else "unnamed")[:100]


# Where Atlassian serves all.js, the script every Connect page must load (templates/registrations).
CONNECT_CDN = "https://connect-cdn.atl-paas.net"


def _frame_for_tenant(request: Any, response: Any) -> Any:
    """Connect pages live in an iframe on the tenant's site: allow exactly that site to frame them.

    The directive is built from the parsed, validated origin (``https://host``) only, never from the
    stored string: a ``baseUrl`` with ``;``, spaces or user info cannot add directives to the header. A
    stored URL that no longer passes (an install before the check existed) gets ``'none'``.
    """
    response.xframe_options_exempt = True
    # A page for one tenant and one account: no shared or browser cache may keep it (item 6).
    never_cache(response)
    base_url = request.connect.tenant.base_url
    if not _own_policy(request, response):
        # The whole policy, built once and filled in with the site, not by django-csp on every response
        # (issue 19, item 1); security.middleware.CSPMiddleware leaves a response's own policy alone.
        response[CSP_HEADER] = connect_policy(base_url)
        return response
    # A view that asked for its own policy changes: the same two changes on top of them.
    response._csp_replace = {
        **(getattr(response, "_csp_replace", None) or {}),
        "frame-ancestors": [base_urls.origin(base_url) or "'none'"],
    }
    response._csp_update = {**(getattr(response, "_csp_update", None) or {}), "script-src": [CONNECT_CDN]}
    return response


def _own_policy(request: Any, response: Any) -> bool:
    """Whether the view changed the page's policy itself, or its page used a CSP nonce."""
    return (
        CSP_HEADER in response
        or getattr(request, "_csp_nonce", None) is not None
        or any(getattr(response, name, None) for name in ("_csp_config", "_csp_update", "_csp_replace"))
    )


def connect_policy(base_url: str) -> str:
    """A Connect page's Content-Security-Policy for the tenant at ``base_url``: the site-wide policy
    (django-csp's ``build_policy``, the same text) with two changes: ``frame-ancestors`` is the tenant's
    site instead of ``'none'``, and Atlassian's iframe bridge (all.js) may load.

    Built once with a stand-in site and filled in per request, rather than once per tenant: with
    thousands of tenants a per-tenant cache would miss as often as it hit.
    """
    ancestor = base_urls.origin(base_url) or "'none'"
    parts = _connect_policy_parts()
    if parts is None:
        return _build_connect_policy(ancestor)
    head, tail = parts
    return head + ancestor + tail


# A site no policy names (``.invalid``: RFC 2606), standing in for the tenant's while the policy is built.
_STAND_IN = "https://frame-ancestor.invalid"


def _build_connect_policy(ancestor: str) -> str:
    return build_policy(update={"script-src": [CONNECT_CDN]}, replace={"frame-ancestors": [ancestor]})


@lru_cache(maxsize=1)
def _connect_policy_parts() -> tuple[str, str] | None:
    """The Connect policy before and after the tenant's site; None if the stand-in is not there once."""
    head, found, tail = _build_connect_policy(_STAND_IN).partition(_STAND_IN)
    return (head, tail) if found and _STAND_IN not in tail else None


def _policy_changed(*, setting: str, **_kwargs: Any) -> None:
    """The built policy follows the settings it was built from (tests override them)."""
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        _connect_policy_parts.cache_clear()


setting_changed.connect(_policy_changed, dispatch_uid="registrations.jwt.connect_policy")


def connect_jwt_required(
    view: Callable[..., HttpResponseBase] | None = None,
    *,
    allow_context_qsh: bool = False,
    module: str | None = None,
) -> Any:
    """Protect a view with Connect JWT authentication; usable bare or with arguments.

    ``allow_context_qsh`` accepts Atlassian's page-load tokens (``qsh: context-qsh``); ``module`` names the
    Connect module for the usage count (default: the URL name). The view is CSRF-exempt: a request that
    carries a tenant-signed token is not something a third-party site can forge with ambient cookies.
    """

    def decorate(view_func: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @wraps(view_func)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            failure = _authenticate_view(request, allow_context_qsh=allow_context_qsh)
            if failure is not None:
                return failure
            return _serve_counted(request, module, lambda: view_func(request, *args, **kwargs))

        wrapped.connect_jwt_protected = True  # type: ignore[attr-defined]  # read by the early refusal
        return csrf_exempt(wrapped)

    return decorate(view) if view is not None else decorate


class ConnectJWTRequiredMixin:
    """Class-based-view form of ``connect_jwt_required``; set ``allow_context_qsh`` and ``connect_module``."""

    allow_context_qsh = False
    connect_module = None

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponseBase]:
        """CSRF-exempt for the same reason as the decorator; marked for the early refusal."""
        view = csrf_exempt(super().as_view(**initkwargs))  # type: ignore[misc]  # a mixin: View comes after
        view.connect_jwt_protected = True
        return view

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """Authenticate before any handler runs."""
        failure = _authenticate_view(request, allow_context_qsh=self.allow_context_qsh)
        if failure is not None:
            return failure
        dispatch = super().dispatch  # type: ignore[misc]  # a mixin: View comes after
        return _serve_counted(request, self.connect_module, lambda: dispatch(request, *args, **kwargs))


# --- outbound -----------------------------------------------------------------------------------------


@sensitive_variables("tenant")
def sign_outbound(
    tenant: Registration, method: str, path: str, query: str = "", *, expires_in: int = 180
) -> str:
    """A JWT for one call from the app to ``tenant``'s REST API (``iss`` = our app key, HS256).

    ``path`` is relative to the tenant's ``base_url`` (e.g. ``/rest/api/content``) and ``query`` the
    parameters that will be sent, so the ``qsh`` covers exactly that request.
    """
    now = int(time.time())
    claims = {
        "iss": settings.CONNECT_APP_KEY,
        "iat": now,
        "exp": now + expires_in,
        "qsh": canonical_query_string_hash(method, path, query),
    }
    return pyjwt.encode(claims, tenant.shared_secret, algorithm="HS256")
