"""The second step of the staff login (verification), enrolment of an authenticator, and the lockout page."""

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import logout
from django.contrib.auth.signals import user_login_failed
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django_otp import login as otp_login

from security import audit, services
from security.forms import TokenForm
from security.models import AccessAction


def _next_url(request):
    """Where to go once verified: the ``next`` the gate sent, if it is ours; else the admin index."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("admin:index")


def _context(request, **extra):
    """The admin's page context without its navigation: nothing of the admin shows before the code."""
    return {
        **admin.site.each_context(request),
        "available_apps": [],
        "is_nav_sidebar_enabled": False,
        "next": _next_url(request),
        **extra,
    }


def _staff_only(request):
    """A redirect to the admin login unless a staff user is logged in (by password) already."""
    user = request.user
    if user.is_authenticated and user.is_staff and user.is_active:
        return None
    return redirect_to_login(request.get_full_path(), reverse("admin:login"))


def _lock_out(request, credentials):
    """End the half-logged-in session and show the lockout page."""
    request.security_logout_reason = "locked out"
    logout(request)
    return locked_out(request, None, credentials)


@sensitive_post_parameters("otp_token")
@never_cache
@csrf_protect
def verify(request):
    """Ask for a code from the authenticator app, or a backup code; success opens the admin."""
    refusal = _staff_only(request)
    if refusal:
        return refusal
    user = request.user
    if user.is_verified():
        return HttpResponseRedirect(_next_url(request))
    if not services.has_authenticator(user):
        return HttpResponseRedirect(
            reverse("security:otp_enrol") + "?" + urlencode({"next": _next_url(request)})
        )
    credentials = {"username": user.get_username()}
    if not AxesProxyHandler.is_allowed(request, credentials):
        return _lock_out(request, credentials)
    form = TokenForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        result = services.verify_second_factor(user=user, token=form.cleaned_data["otp_token"])
        if result.device is not None:
            otp_login(request, result.device)
            request.session.cycle_key()  # a new session id for the elevated session
            if result.backup_code:
                left = result.device.token_set.count()
                audit.record(request, action=AccessAction.BACKUP_CODE_USED, detail=f"{left} left")
                messages.warning(
                    request,
                    ngettext(
                        "You used a backup code; %(count)d is left.",
                        "You used a backup code; %(count)d are left.",
                        left,
                    )
                    % {"count": left},
                )
            else:
                audit.record(request, action=AccessAction.OTP_VERIFIED)
            return HttpResponseRedirect(_next_url(request))
        # A wrong code counts towards the same lockout as a wrong password.
        user_login_failed.send(
            sender=__name__, credentials={**credentials, "second_factor": True}, request=request
        )
        if getattr(request, "axes_locked_out", False):
            return _lock_out(request, credentials)
        if result.wait_seconds:
            form.add_error(
                "otp_token",
                _("Too many wrong codes: wait %(seconds)d seconds, then try again.")
                % {"seconds": result.wait_seconds},
            )
        else:
            form.add_error(
                "otp_token", _("That code is not valid. Check the time on your phone, or use a backup code.")
            )
    return TemplateResponse(
        request, "security/verify.html", _context(request, form=form, title=_("Two-factor verification"))
    )


@sensitive_post_parameters("otp_token")
@never_cache
@csrf_protect
def enrol(request):
    """Set up an authenticator: the secret as text and QR code, confirmed with a first code.

    A staff user who has an authenticator can reach this only after verifying with it, so a stolen
    password alone can never replace someone's second factor.
    """
    refusal = _staff_only(request)
    if refusal:
        return refusal
    user = request.user
    if services.has_authenticator(user) and not user.is_verified():
        return HttpResponseRedirect(
            reverse("security:otp_verify") + "?" + urlencode({"next": _next_url(request)})
        )
    if not services.may_enrol(user=user):
        audit.record(request, action=AccessAction.OTP_ENROL_REFUSED, succeeded=False)
        return TemplateResponse(
            request,
            "security/enrol_closed.html",
            _context(request, days=settings.STAFF_2FA_ENROL_DAYS, title=_("Set-up period over")),
            status=403,
        )
    device = services.pending_authenticator(user=user)
    form = TokenForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        confirmed, codes = services.confirm_enrolment(
            user=user, device_id=device.pk, token=form.cleaned_data["otp_token"]
        )
        if confirmed is not None:
            otp_login(request, confirmed)
            request.session.cycle_key()
            audit.record(request, action=AccessAction.OTP_ENROLLED)
            return TemplateResponse(
                request,
                "security/backup_codes.html",
                _context(request, codes=codes, title=_("Your backup codes")),
            )
        form.add_error("otp_token", _("That code is not valid. Check the time on your phone and try again."))
    enrolment = services.enrolment_of(device)
    return TemplateResponse(
        request,
        "security/enrol.html",
        _context(
            request,
            form=form,
            secret=enrolment.secret,
            # segno's SVG: paths and attributes only, no script or style; the content is ours.
            qr_svg=mark_safe(enrolment.qr_svg),  # noqa: S308
            title=_("Set up two-factor authentication"),
        ),
    )


def locked_out(request, original_response=None, credentials=None):
    """The lockout page (axes' ``AXES_LOCKOUT_CALLABLE``): HTTP 429, how long, and nothing else."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    response = TemplateResponse(
        request, "security/locked_out.html", {"minutes": minutes}, status=settings.AXES_HTTP_RESPONSE_CODE
    )
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response.render()
