"""Admin session rules, the Permissions-Policy header and the Content-Security-Policy middleware.

``AdminSessionMiddleware`` guards every path under the admin:

1. it ends a staff session that has been idle longer than ``ADMIN_IDLE_TIMEOUT_MINUTES`` or is older
   than ``SESSION_COOKIE_AGE`` since login (the database expiry alone would slide with each save);
2. it sends a staff user whose session has not passed the second factor to the verification page (or
   to enrolment when they have no authenticator yet), so that nothing but login, logout, enrolment
   and verification is reachable before it.
"""

import time
from functools import lru_cache

import csp.middleware
from csp.constants import HEADER as CSP_HEADER
from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpResponseRedirect
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse
from django.utils.http import urlencode

from security import services
from security.signals import AUTH_AT_SESSION_KEY, SEEN_AT_SESSION_KEY

# The last-seen stamp is saved at most this often, so a busy page does not write the session each time.
SEEN_RESOLUTION_SECONDS = 60


def _admin_paths():
    """The admin prefix and the paths open before the second factor; None where no admin is mounted."""
    return _admin_paths_for(get_urlconf(), get_script_prefix())


@lru_cache(maxsize=16)
def _admin_paths_for(urlconf, script_prefix):
    """Five ``reverse`` calls cost more than the rest of this middleware on every request (issue 19):
    computed once per URLconf and script prefix, the only inputs ``reverse`` reads here."""
    try:
        open_paths = frozenset(
            reverse(name, urlconf)
            for name in ("admin:login", "admin:logout", "security:otp_verify", "security:otp_enrol")
        )
        return reverse("admin:index", urlconf), open_paths
    except NoReverseMatch:  # a test URLconf without the admin
        return None, frozenset()


class AdminSessionMiddleware:
    """Idle and absolute expiry of admin sessions, then the second-factor gate (see the module doc)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        prefix, open_paths = _admin_paths()
        user = request.user
        if prefix and request.path.startswith(prefix) and user.is_authenticated:
            reason = self._expired(request)
            if reason:
                request.security_logout_reason = reason
                logout(request)
                return HttpResponseRedirect(
                    reverse("admin:login") + "?" + urlencode({"next": request.get_full_path()})
                )
            if (
                request.path not in open_paths
                and services.requires_second_factor(user)
                and not user.is_verified()
            ):
                target = "security:otp_verify" if services.has_authenticator(user) else "security:otp_enrol"
                return HttpResponseRedirect(
                    reverse(target) + "?" + urlencode({"next": request.get_full_path()})
                )
        return self.get_response(request)

    @staticmethod
    def _expired(request):
        """``"idle timeout"`` or ``"session age limit"`` when the session must end; else stamp it."""
        now = int(time.time())
        session = request.session
        auth_at = session.get(AUTH_AT_SESSION_KEY)
        seen_at = session.get(SEEN_AT_SESSION_KEY)
        if auth_at is None:  # a session from before these rules: count from now
            session[AUTH_AT_SESSION_KEY] = auth_at = now
        if now - auth_at > settings.SESSION_COOKIE_AGE:
            return "session age limit"
        if seen_at is not None and now - seen_at > settings.ADMIN_IDLE_TIMEOUT_MINUTES * 60:
            return "idle timeout"
        if seen_at is None or now - seen_at >= SEEN_RESOLUTION_SECONDS:
            session[SEEN_AT_SESSION_KEY] = now
        return ""


class PermissionsPolicyMiddleware:
    """Send ``Permissions-Policy`` (settings.PERMISSIONS_POLICY) on every response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.PERMISSIONS_POLICY:
            response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response


class CSPMiddleware(csp.middleware.CSPMiddleware):
    """django-csp's middleware, except that a response which already carries its whole policy is sent as
    it is without building the site-wide one first (django-csp builds it, then keeps the response's).

    Why (issue 19, item 1): a Connect page brings its own policy (``registrations.jwt.connect_policy``,
    built once and filled in per site), and building the site-wide policy and the report-only one on every
    response cost more than verifying the page's token. When a report-only policy is configured,
    django-csp still adds it as before.
    """

    def process_response(self, request, response):
        if CSP_HEADER in response and not getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None):
            if getattr(request, "_csp_nonce", None) is None:  # as django-csp: no nonce after the header
                request.csp_nonce = csp.middleware.CheckableLazyObject(self._csp_nonce_post_response)
            return response
        return super().process_response(request, response)
