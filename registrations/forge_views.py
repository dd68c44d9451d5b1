"""Forge endpoints of the registry: the lifecycle events (``POST /forge/events/``).

Views only translate HTTP: the FIT is verified by ``forge_jwt``, the body checked here, writes done by
``forge``. Answers: 204 (applied, a repeat, or an event older than the newest one applied), 400 (bad body),
401 (bad token, with a short reason), 503 (Forge's JWKS unavailable). The event is one upsert; linking the
installation to the site's Connect registration is a background job, so the answer comes well within
Forge's 5-second timeout.
"""

import json
import re

from django.http import HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from registrations import forge, forge_manifest, tasks
from registrations.forge_jwt import ForgeAuthError, auth_failure, fit_required

# The manifest's trigger module (forge/manifest.yml) is the only module whose FITs may report lifecycle
# events, so a user's token from another module cannot be replayed here to "uninstall" a site.
LIFECYCLE_MODULE_KEY = forge_manifest.LIFECYCLE_MODULE_KEY
APP_VERSION = re.compile(r"[A-Za-z0-9._+-]{1,50}")
MAX_BODY_BYTES = 64 * 1024


def _parse(body):
    """``(event type, app version)`` from the event body, or a message for a 400."""
    if len(body) > MAX_BODY_BYTES:
        return None, None, _("The body is too large.")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None, None, _("The body must be JSON.")
    if not isinstance(payload, dict):
        return None, None, _("The body must be a JSON object.")
    event = payload.get("eventType")
    if not isinstance(event, str) or event not in forge.EVENTS:
        return None, None, _("'eventType' is not a Forge lifecycle event.")
    app = payload.get("app") if isinstance(payload.get("app"), dict) else {}
    version = app.get("version")
    version = str(version) if isinstance(version, str | int) and not isinstance(version, bool) else ""
    return event, version if APP_VERSION.fullmatch(version) else "", None


@require_POST
@fit_required(module="lifecycle")
def events(request):
    """Forge's ``avi:forge:installed:app`` / ``upgraded`` / ``uninstalled`` events for our apps."""
    if request.forge.module_key != LIFECYCLE_MODULE_KEY:
        return auth_failure(
            request, ForgeAuthError("module", _("This token is not from the lifecycle trigger."))
        )
    event, version, error = _parse(request.body)
    if error:
        return JsonResponse({"error": str(error)}, status=400)
    result = forge.apply_event(event=event, context=request.forge, app_version=version, actor="forge")
    if result.outcome in ("created", "changed"):
        tasks.link_forge_installation.enqueue(result.installation.installation_id)
    return HttpResponse(status=204)
