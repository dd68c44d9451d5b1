"""Audit receivers for logins, logouts, failed logins and lockouts (``apps.ready`` connects them)."""

import time

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from security import audit
from security.models import AccessAction

AUTH_AT_SESSION_KEY = "security_auth_at"
SEEN_AT_SESSION_KEY = "security_seen_at"


def _known_username(credentials):
    """The username tried, only if such an account exists.

    People type passwords into the username box; an unknown name is never written down.
    """
    name = str((credentials or {}).get("username") or "")[:150]
    if name and get_user_model()._default_manager.filter(**{get_user_model().USERNAME_FIELD: name}).exists():
        return name
    return ""


@receiver(user_logged_in, dispatch_uid="security_audit_login")
def _logged_in(sender, request, user, **kwargs):
    if request is None:
        return
    if hasattr(request, "session"):
        # The absolute session limit counts from here, however often the session is saved later.
        now = int(time.time())
        request.session[AUTH_AT_SESSION_KEY] = now
        request.session[SEEN_AT_SESSION_KEY] = now
    audit.record(request, action=AccessAction.LOGIN, user=user)


@receiver(user_logged_out, dispatch_uid="security_audit_logout")
def _logged_out(sender, request, user, **kwargs):
    if request is None or user is None:
        return
    audit.record(
        request, action=AccessAction.LOGOUT, user=user, detail=getattr(request, "security_logout_reason", "")
    )


@receiver(user_login_failed, dispatch_uid="security_audit_login_failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    if request is None:
        return
    second_factor = bool((credentials or {}).get("second_factor"))
    audit.record(
        request,
        action=AccessAction.OTP_FAILED if second_factor else AccessAction.LOGIN_FAILED,
        succeeded=False,
        username=_known_username(credentials),
    )


@receiver(user_locked_out, dispatch_uid="security_audit_locked_out")
def _locked_out(sender, request, username=None, ip_address=None, **kwargs):
    if request is None:
        return
    audit.record(
        request,
        action=AccessAction.LOCKED_OUT,
        succeeded=False,
        username=_known_username({"username": username}),
    )
