"""The two-factor setting: on in production, relaxable only in DEBUG; the local-admin hints."""

import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from artemis_portal.tests.test_settings import PRODUCTION, manage
from security.models import AccessAction, AccessEvent
from security.testing import authenticator_for
from security.tests.conftest import password_login

CHANGELIST = reverse("admin:dsr_requests_rightsrequest_changelist")


def test_production_refuses_to_start_with_two_factor_turned_off():
    result = manage("check", **PRODUCTION, STAFF_2FA_REQUIRED="0")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "Configuration error: STAFF_2FA_REQUIRED may be turned off only when DEBUG is on."
    )


def test_development_may_turn_two_factor_off():
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.STAFF_2FA_REQUIRED)",
        DEBUG="1",
        STAFF_2FA_REQUIRED="0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("False")


def test_production_settings_enforce_two_factor_and_lockout_by_default():
    code = (
        "from django.conf import settings as s;"
        "print(s.STAFF_2FA_REQUIRED, s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME, s.AXES_HTTP_RESPONSE_CODE,"
        " s.ADMIN_IDLE_TIMEOUT_MINUTES, s.SESSION_EXPIRE_AT_BROWSER_CLOSE, s.OTP_TOTP_THROTTLE_FACTOR)"
    )
    result = manage("shell", "-c", code, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "True 5 0:15:00 429 30 True 1" in result.stdout


@pytest.mark.django_db
def test_relaxed_in_debug_staff_without_a_device_reach_the_admin_with_the_password(staff, browser, settings):
    settings.STAFF_2FA_REQUIRED = False
    password_login(browser, staff.username)
    assert browser.get(CHANGELIST).status_code == 200


@pytest.mark.django_db
def test_relaxed_in_debug_staff_who_enrolled_still_give_their_code(staff, browser, settings):
    settings.STAFF_2FA_REQUIRED = False
    authenticator_for(staff)
    password_login(browser, staff.username)
    assert browser.get(CHANGELIST)["Location"].startswith(reverse("security:otp_verify"))


@pytest.mark.django_db
def test_ensure_local_admin_says_how_to_enrol():
    out = io.StringIO()
    call_command("ensure_local_admin", stdout=out)
    assert "/admin/2fa/enrol/" in out.getvalue() and "STAFF_2FA_REQUIRED=0" in out.getvalue()


@pytest.mark.django_db
def test_reset_staff_2fa_removes_the_devices_so_the_next_login_enrols(staff, browser):
    authenticator_for(staff)
    call_command("reset_staff_2fa", staff.username, stdout=io.StringIO())
    password_login(browser, staff.username)
    assert browser.get(CHANGELIST)["Location"].startswith(reverse("security:otp_enrol"))
    assert AccessEvent.objects.filter(action=AccessAction.LOGIN, user=staff).exists()


@pytest.mark.django_db
def test_ensure_local_admin_says_how_to_reopen_an_expired_set_up_period(settings):
    call_command("ensure_local_admin", stdout=io.StringIO())
    admin = get_user_model().objects.get(username="admin")
    admin.date_joined = timezone.now() - timedelta(days=settings.STAFF_2FA_ENROL_DAYS + 1)
    admin.save()
    out = io.StringIO()
    call_command("ensure_local_admin", stdout=out)
    assert "manage.py reset_staff_2fa admin" in out.getvalue()
