"""Write audit rows from a request: who, what, which object, when, and from where.

Everything here names objects by reference only (``DSR-…``), never by a requester's name or email,
and keeps only the first characters of the user agent.
"""

import ipaddress

from django.contrib.contenttypes.models import ContentType

from artemis_portal.client_ip import client_ip as shared_rule
from security.models import AccessAction, AccessEvent

USER_AGENT_LENGTH = 200


def client_ip(request):
    """The client IP by the project's one rule (also axes' ``AXES_CLIENT_IP_CALLABLE``).

    REMOTE_ADDR, or behind Heroku's router (``DSR_BEHIND_PROXY``) the last X-Forwarded-For hop: the
    only hop the router itself wrote; earlier ones are whatever the client sent.
    """
    return shared_rule(request)


def _valid_ip(value):
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def reference_of(obj):
    """A name for ``obj`` that carries no personal data: its reference, or its request's."""
    if obj is None:
        return ""
    for candidate in (obj, getattr(obj, "request", None)):
        reference = getattr(candidate, "reference", "")
        if reference:
            return str(reference)[:100]
    return f"{obj._meta.model_name} {obj.pk}"


def record(request, *, action, obj=None, detail="", succeeded=True, user=None, username=""):
    """Append one ``AccessEvent`` for ``request``; ``user`` defaults to the request's user."""
    if user is None:
        candidate = getattr(request, "user", None) if request is not None else None
        user = candidate if getattr(candidate, "is_authenticated", False) else None
    meta = request.META if request is not None else {}
    return AccessEvent.objects.create(
        user=user,
        username=(user.get_username() if user is not None else username)[:150],
        action=AccessAction(action),
        succeeded=succeeded,
        content_type=ContentType.objects.get_for_model(obj) if obj is not None else None,
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=reference_of(obj),
        detail=str(detail)[:200],
        ip=_valid_ip(client_ip(request)) if request is not None else None,
        user_agent=meta.get("HTTP_USER_AGENT", "")[:USER_AGENT_LENGTH],
        request_id=str(getattr(request, "request_id", ""))[:128],
    )
