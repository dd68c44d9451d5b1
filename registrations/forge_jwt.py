"""Forge Invocation Tokens (FIT): authenticating the calls Forge makes to the app's remote.

Beside ``jwt.py`` (Connect), never inside it: a Connect-on-Forge app receives both, for the same sites, and
neither is a special case of the other. A FIT comes in ``Authorization: Bearer <token>``; it is RS256 only,
signed with a key from Forge's JWKS (``forge_keys``, fetched by ``kid`` with a bounded refresh), issued by
``forge/invocation-token`` for ``ari:cloud:ecosystem::app/<id>`` with ``<id>`` one of ``FORGE_APP_IDS``,
and must carry ``exp``, ``nbf`` and ``iat`` (checked with the Connect leeway, ``CONNECT_JWT_LEEWAY``).
The claims name the installation (``app.installationId``), the site (``context.cloudId``,
``context.siteUrl``) and the user (``principal``, an Atlassian account ID, absent for system calls).

Every failure raises ``ForgeAuthError`` (a 401 with a short reason; ``code`` is what is counted and
logged) or ``forge_keys.KeyServiceUnavailable`` (the JWKS is down or answered 5xx: a 503). Nothing here
may raise anything else on bad input; ``tests/test_forge_properties.py`` fuzzes it.
"""

import binascii
import json
import logging
import re
from dataclasses import dataclass, field
from functools import wraps
from urllib.parse import urlsplit

import jwt as pyjwt
from django.conf import settings
from django.http import JsonResponse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables
from jwt.utils import base64url_decode

from registrations import forge, forge_keys, services
from registrations.identifiers import ACCOUNT_ID, log_value

logger = logging.getLogger("artemis.forge")

ISSUER = "forge/invocation-token"
APP_ARI_PREFIX = "ari:cloud:ecosystem::app/"
# FITs are around a kilobyte; anything much larger is not one and is not worth parsing.
MAX_TOKEN_LENGTH = 16384
INSTALLATION_ID = re.compile(r"[A-Za-z0-9:/._-]{1,255}")
CLOUD_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
ENVIRONMENT_TYPE = re.compile(r"[A-Za-z_]{1,30}")
ENVIRONMENT_ID = re.compile(r"[A-Za-z0-9:/._-]{1,255}")
MODULE_KEY = re.compile(r"[A-Za-z0-9:._-]{1,90}")


class ForgeAuthError(Exception):
    """A FIT was missing or did not verify; ``message`` is safe to show, ``code`` to count and log."""

    status = 401

    def __init__(self, code, message):
        super().__init__(code)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ForgeContext:
    """What a verified FIT establishes: the app, its installation and site, and the account, if any."""

    app_id: str
    installation_id: str
    cloud_id: str
    site_url: str
    environment_type: str
    environment_id: str
    account_id: str | None
    module_key: str
    claims: dict = field(repr=False)


def app_ari(app_id):
    """The ``aud`` a FIT for the app ``app_id`` (a UUID) carries."""
    return APP_ARI_PREFIX + app_id


def token_from_request(request):
    """The raw token from ``Authorization: Bearer <token>``."""
    scheme, _sep, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = token.strip()
    if not scheme:
        raise ForgeAuthError("missing", _("A Forge invocation token is required."))
    if scheme.lower() != "bearer" or not token:
        raise ForgeAuthError("scheme", _("The Authorization header must be 'Bearer <token>'."))
    if len(token) > MAX_TOKEN_LENGTH:
        raise ForgeAuthError("malformed", _("The token is malformed."))
    return token


def _header(token):
    """The unverified header, only to pick the key: bad input is a 401, never a 500."""
    try:
        header_b64, _payload, _signature = token.split(".")
        header = json.loads(base64url_decode(header_b64))
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise ForgeAuthError("malformed", _("The token is malformed.")) from None
    if not isinstance(header, dict):
        raise ForgeAuthError("malformed", _("The token is malformed."))
    return header


@sensitive_variables("token")
def _decode(token, key):
    audiences = [app_ari(app_id) for app_id in settings.FORGE_APP_IDS]
    if not audiences:
        raise ForgeAuthError("app-not-configured", _("No Forge app is configured on this portal."))
    try:
        return pyjwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=audiences,
            issuer=ISSUER,
            leeway=settings.CONNECT_JWT_LEEWAY,
            options={"require": ["exp", "nbf", "iat", "iss", "aud"]},
        )
    except pyjwt.ExpiredSignatureError:
        raise ForgeAuthError("expired", _("The token has expired.")) from None
    except pyjwt.ImmatureSignatureError:
        raise ForgeAuthError("not-yet-valid", _("The token is not valid yet.")) from None
    except pyjwt.MissingRequiredClaimError as exc:
        raise ForgeAuthError("claims", _("The token lacks the '%s' claim.") % exc.claim) from None
    except pyjwt.InvalidIssuerError:
        raise ForgeAuthError("iss", _("The token was not issued by Forge.")) from None
    except pyjwt.InvalidAudienceError:
        raise _audience_error(token) from None
    except pyjwt.InvalidSignatureError:
        raise ForgeAuthError("signature", _("The token signature does not verify.")) from None
    except (pyjwt.PyJWTError, ValueError, TypeError, RecursionError):
        raise ForgeAuthError("invalid", _("The token is not valid.")) from None


def _audience_error(token):
    """An app ARI we do not serve is told apart from an audience that is no app at all (for the counts)."""
    try:
        aud = pyjwt.decode(token, options={"verify_signature": False}).get("aud")
    except (pyjwt.PyJWTError, ValueError, TypeError, RecursionError):
        aud = None
    values = aud if isinstance(aud, list) else [aud]
    if any(isinstance(a, str) and a.startswith(APP_ARI_PREFIX) for a in values):
        return ForgeAuthError(
            "app-not-configured", _("The token is for a Forge app this portal does not serve.")
        )
    return ForgeAuthError("aud", _("The token's audience is not a Forge app."))


def _text(value, pattern):
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def _site_url(value):
    """``context.siteUrl`` if it is a plain https origin (no user info, port or path tricks), else ``""``."""
    if not isinstance(value, str) or len(value) > 500:
        return ""
    try:
        parts = urlsplit(value)
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    if parts.scheme != "https" or not host or port or "@" in parts.netloc or parts.query or parts.fragment:
        return ""
    if not re.fullmatch(r"[a-z0-9.-]{1,253}", host):
        return ""
    return f"https://{host}"


def _context(claims):
    """The ``ForgeContext`` of verified claims; shapes we cannot use are a 401 ``claims``."""
    app = claims.get("app")
    context = claims.get("context")
    if not isinstance(app, dict) or not isinstance(context, dict):
        raise ForgeAuthError("claims", _("The token lacks the 'app' or 'context' claim."))
    installation_id = _text(app.get("installationId"), INSTALLATION_ID)
    if installation_id is None:
        raise ForgeAuthError("claims", _("The token lacks a valid 'app.installationId'."))
    cloud_id = _text(context.get("cloudId"), CLOUD_ID)
    if cloud_id is None:
        raise ForgeAuthError("claims", _("The token lacks a valid 'context.cloudId'."))
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    app_ids = [a[len(APP_ARI_PREFIX) :] for a in aud if isinstance(a, str) and a.startswith(APP_ARI_PREFIX)]
    app_id = next((a for a in app_ids if a in settings.FORGE_APP_IDS), None)
    if app_id is None or (app.get("id") is not None and app.get("id") != app_ari(app_id)):
        raise ForgeAuthError("aud", _("The token's app does not match its audience."))
    environment = app.get("environment") if isinstance(app.get("environment"), dict) else {}
    module = app.get("module") if isinstance(app.get("module"), dict) else {}
    principal = claims.get("principal")
    if principal is not None and not (isinstance(principal, str) and ACCOUNT_ID.fullmatch(principal)):
        raise ForgeAuthError("claims", _("The token's 'principal' is not an account ID."))
    return ForgeContext(
        app_id=app_id,
        installation_id=installation_id,
        cloud_id=cloud_id,
        site_url=_site_url(context.get("siteUrl")),
        environment_type=(_text(environment.get("type"), ENVIRONMENT_TYPE) or "").upper(),
        environment_id=_text(environment.get("id"), ENVIRONMENT_ID) or "",
        account_id=principal or None,
        module_key=_text(module.get("key"), MODULE_KEY) or "",
        claims=claims,
    )


@sensitive_variables("token")
def verify_token(token):
    """Verify a FIT and return its ``ForgeContext``; ``ForgeAuthError`` or ``KeyServiceUnavailable``."""
    header = _header(token)
    if header.get("alg") != "RS256":
        raise ForgeAuthError("algorithm", _("Only RS256 tokens are accepted."))
    if "crit" in header or "b64" in header:
        raise ForgeAuthError("invalid", _("The token is not valid."))
    kid = header.get("kid")
    if not forge_keys.valid_kid(kid):
        raise ForgeAuthError("kid", _("The token has no valid 'kid' header."))
    key = forge_keys.public_key(kid)
    if key is None:
        raise ForgeAuthError("kid", _("The token's signing key is unknown."))
    return _context(_decode(token, key))


def authenticate_request(request):
    """The ``ForgeContext`` of the request's FIT."""
    return verify_token(token_from_request(request))


def auth_failure(request, error):
    """Count and log a refused FIT (reason code, installation and account ID only); the 401 response."""
    forge.record_fit_failure(reason=error.code)
    logger.warning("forge auth failed reason=%s", error.code)
    response = JsonResponse({"error": str(error.message)}, status=error.status)
    response["WWW-Authenticate"] = 'Bearer realm="forge"'
    return response


def keys_unavailable(error):
    """The 503 for a JWKS that is down or answered 5xx: Forge (or the user) may try again shortly."""
    logger.warning("forge jwks unavailable: %s", error)
    forge.record_fit_failure(reason="jwks-unavailable")
    response = JsonResponse({"error": str(_("Forge's signing keys are unavailable; try again."))}, status=503)
    response["Retry-After"] = "30"
    return response


def fit_required(view=None, *, module=None):
    """Protect a view with FIT authentication: ``request.forge`` is the ``ForgeContext``.

    Success counts one use of ``forge:<module>`` (default: the URL name) with the same function Connect
    calls use, and logs the installation and account ID only. The view is CSRF-exempt: the token, not a
    cookie, is the credential.
    """

    def decorate(view_func):
        @wraps(view_func)
        def wrapped(request, *args, **kwargs):
            try:
                request.forge = authenticate_request(request)
            except ForgeAuthError as error:
                return auth_failure(request, error)
            except forge_keys.KeyServiceUnavailable as error:
                return keys_unavailable(error)
            name = module or _url_name(request)
            with services.usage_counted(module=f"forge:{name}"[:100]):
                logger.info(
                    "forge call module=%s installation=%s account_id=%s",
                    name,
                    log_value(request.forge.installation_id.rsplit("/", 1)[-1]),
                    log_value(request.forge.account_id),
                )
                return view_func(request, *args, **kwargs)

        return csrf_exempt(wrapped)

    return decorate(view) if view is not None else decorate


def _url_name(request):
    match = request.resolver_match
    return match.url_name if match and match.url_name else "unnamed"
