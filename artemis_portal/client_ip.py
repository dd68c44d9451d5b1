"""The client's IP address by the project's one rule, for rate limits (dsr_requests), the audit and axes
(security): in the bottom layer because every app needs the same answer.
"""

from django.conf import settings


def client_ip(request):
    """The client's IP: REMOTE_ADDR, or the last X-Forwarded-For hop behind one trusted proxy.

    Only the last hop is the proxy's own word; earlier hops are whatever the client chose to send.
    """
    if settings.DSR_BEHIND_PROXY:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if hops[-1]:
            return hops[-1]
    return request.META.get("REMOTE_ADDR", "")
