"""Connect endpoints: descriptor, lifecycle callbacks, and the app's JWT-protected page(s).

Views only translate HTTP: validation lives in ``payloads``, authentication in ``jwt``, writes in
``services``. Every outcome has a defined status: 400 (bad body), 401 (bad token), 503 (key service
unavailable, so Atlassian retries), 204 (done or a harmless repeat).
"""

import logging

from django.http import HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from registrations import install_keys, install_tokens, payloads, tasks
from registrations.descriptor import build_descriptor
from registrations.jwt import (
    ConnectAuthError,
    auth_failure,
    authenticate_request,
    token_algorithm,
    token_from_request,
    verify_install_token,
)
from registrations.models import Registration

logger = logging.getLogger("artemis.connect")

# enabled/disabled are signed with the tenant's shared secret (HS256) in whatever state it is in; the
# service then decides whether the event applies.
ANY_STATE = frozenset(Registration.State.values)


@require_GET
def descriptor(request):
    """The app descriptor Atlassian reads to install the app."""
    return JsonResponse(build_descriptor())


def _verify_lifecycle(request, payload):
    """Authenticate a lifecycle call: RS256 signed install, or HS256 for enabled/disabled.

    Returns the claims of a signed (RS256) token, which must then be spent (``install_tokens``); None for
    an HS256 one.
    """
    if payload.event in {"installed", "uninstalled"} or token_algorithm(request) == "RS256":
        return verify_install_token(request, client_key=payload.client_key)
    context = authenticate_request(request, states=ANY_STATE)
    if context.tenant.client_key != payload.client_key:
        raise ConnectAuthError("iss", _("The JWT's issuer does not match the clientKey."))
    return None


@csrf_exempt
@require_POST
@sensitive_variables("payload")
def lifecycle(request, event):
    """Atlassian's ``installed`` / ``uninstalled`` / ``enabled`` / ``disabled`` callback."""
    try:
        payload = payloads.parse(request.body, event=event)
    except payloads.PayloadError as error:
        return JsonResponse({"error": str(error.message)}, status=400)
    try:
        signed_claims = _verify_lifecycle(request, payload)
        install_tokens.apply_lifecycle(
            payload=payload,
            token=token_from_request(request) if signed_claims is not None else None,
            signed_claims=signed_claims,
            actor="atlassian",
        )
    except install_tokens.TokenReplayed:
        return auth_failure(
            request, ConnectAuthError("replay", _("This signed token has been used already."))
        )
    except ConnectAuthError as error:
        return auth_failure(request, error)
    except install_keys.KeyServiceUnavailable as error:
        logger.warning("connect install-key service unavailable: %s", error)
        response = JsonResponse(
            {"error": _("The install-key service is unavailable; try again.")}, status=503
        )
        response["Retry-After"] = "30"
        return response
    if event == "installed":
        # The same site may have Forge installations already: link them (a background job).
        tasks.link_connect_registration.enqueue(payload.client_key)
    return HttpResponse(status=204)
