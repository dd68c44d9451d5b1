"""The Atlassian-account proof from a Forge app: ``POST /forge/identity-proof/`` with a FIT.

The Forge twin of ``views.account_proof`` (Connect): the FIT's ``principal`` (account ID) and site are
bound to the request whose one-time code is sent, through the same service
(``services.redeem_account_code``) and the same per-account rate limit, so single use, expiry and attempt
limits are shared by both platforms. JSON in, JSON out:

- 200 ``{"reference": "DSR-..."}``: bound;
- 400 ``{"error": ...}``: bad body, or the code was refused (wrong, used, expired, another site);
- 401: bad token (``registrations.forge_jwt``) or an installation we do not have as installed;
- 403: a token without a ``principal`` (a system call: there is no account to bind);
- 429: too many attempts for this account on this site; 503: Forge's JWKS unavailable.
"""

import json
import re

from django.conf import settings
from django.http import JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from dsr_requests import ratelimit, services
from registrations.forge_jwt import ForgeAuthError, auth_failure, fit_required
from registrations.models import ForgeInstallation

CODE = re.compile(r"[A-Za-z0-9 -]{1,20}")
MAX_BODY_BYTES = 4096


def _code(body):
    """The code from ``{"code": "..."}``, or ``None``."""
    if len(body) > MAX_BODY_BYTES:
        return None
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    code = payload.get("code") if isinstance(payload, dict) else None
    return code.strip() if isinstance(code, str) and CODE.fullmatch(code.strip() or "-") else None


@never_cache
@require_POST
@fit_required(module="identity-proof")
def identity_proof(request):
    """Bind the FIT's account and site to the request whose status-page code is in the body."""
    forge = request.forge
    installation = (
        ForgeInstallation.objects.select_related("registration")
        .only("state", "site_url", "registration__client_key")
        .filter(installation_id=forge.installation_id)
        .first()
    )
    if installation is None or installation.state != ForgeInstallation.State.INSTALLED:
        error = ForgeAuthError("installation", _("The app is not installed on this site."))
        return auth_failure(request, error)
    if forge.account_id is None:
        return JsonResponse({"error": _("Sign in to Atlassian to confirm your account.")}, status=403)
    # The site's Connect client key when the site has Connect too (site-scoped erasure and the personal
    # data report use it); a Forge-only site is bound by its URL alone.
    client_key = installation.registration.client_key if installation.registration else ""
    site_key = client_key or f"forge:{forge.cloud_id}"
    if ratelimit.hit("account-code", f"{site_key}:{forge.account_id}", settings.DSR_RATE_CODE_PER_ACCOUNT):
        return JsonResponse({"error": _("Too many attempts; wait a few minutes and try again.")}, status=429)
    code = _code(request.body)
    if code is None:
        return JsonResponse({"error": _('Send {"code": "<the code from your status page>"}.')}, status=400)
    try:
        rights_request = services.redeem_account_code(
            code=code,
            client_key=client_key,
            site_url=forge.site_url or installation.site_url,
            account_id=forge.account_id,
            actor=services.REQUESTER,
            method="one-time code in the Forge app",
        )
    except services.ActionRefused as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"reference": rights_request.reference})
