"""Staff two-factor: password, then a code; enrolment with a QR code and backup codes; lockout."""

import io
import re
from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from security import services
from security.models import AccessAction, AccessEvent
from security.testing import authenticator_for, current_code
from security.tests.conftest import password_login

pytestmark = pytest.mark.django_db

VERIFY = reverse("security:otp_verify")
ENROL = reverse("security:otp_enrol")
CHANGELIST = reverse("admin:dsr_requests_rightsrequest_changelist")


def actions(**filters):
    return list(AccessEvent.objects.filter(**filters).order_by("id").values_list("action", flat=True))


def test_password_alone_opens_nothing_of_the_admin_for_staff_with_an_authenticator(browser, staff):
    authenticator_for(staff)
    response = password_login(browser, staff.username)
    assert response.status_code == 302
    for url in ("/admin/", CHANGELIST, reverse("admin:security_accessevent_changelist")):
        response = browser.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(VERIFY)


def test_a_correct_authenticator_code_opens_the_admin(browser, staff):
    device = authenticator_for(staff)
    password_login(browser, staff.username)
    page = browser.get(VERIFY + "?next=" + CHANGELIST)
    assert page.status_code == 200
    assert 'name="otp_token"' in page.content.decode()
    response = browser.post(VERIFY, {"otp_token": current_code(device), "next": CHANGELIST})
    assert response.status_code == 302 and response["Location"] == CHANGELIST
    assert browser.get(CHANGELIST).status_code == 200
    assert actions(user=staff) == [AccessAction.LOGIN, AccessAction.OTP_VERIFIED]


def test_a_wrong_code_is_refused_recorded_and_throttled(browser, staff):
    device = authenticator_for(staff)
    password_login(browser, staff.username)
    response = browser.post(VERIFY, {"otp_token": "000000" if current_code(device) != "000000" else "111111"})
    assert response.status_code == 200
    assert "not valid" in response.content.decode()
    assert browser.get(CHANGELIST).status_code == 302
    assert AccessEvent.objects.filter(action=AccessAction.OTP_FAILED, succeeded=False).count() == 1
    # django-otp's throttling is on: right after a failure, even the right code must wait.
    response = browser.post(VERIFY, {"otp_token": current_code(device)})
    assert response.status_code == 200 and "wait" in response.content.decode()
    with time_machine.travel(timezone.now() + timedelta(seconds=5)):
        assert browser.post(VERIFY, {"otp_token": current_code(device)}).status_code == 302


def test_a_backup_code_works_once(browser, staff):
    authenticator_for(staff)
    static = StaticDevice.objects.create(user=staff, name="backup codes")
    static.token_set.create(token="abcd2345")
    password_login(browser, staff.username)
    assert browser.post(VERIFY, {"otp_token": "ABCD 2345"}).status_code == 302
    assert browser.get(CHANGELIST).status_code == 200
    assert AccessEvent.objects.filter(user=staff, action=AccessAction.BACKUP_CODE_USED).count() == 1

    again = type(browser)()
    password_login(again, staff.username)
    assert again.post(VERIFY, {"otp_token": "abcd2345"}).status_code == 200
    assert again.get(CHANGELIST).status_code == 302


def test_staff_without_a_device_enrol_with_a_qr_code_then_get_backup_codes_once(browser, staff):
    response = password_login(browser, staff.username)
    assert browser.get("/admin/")["Location"].startswith(ENROL)
    page = browser.get(ENROL)
    html = page.content.decode()
    assert page.status_code == 200
    assert "<svg" in html and "<script>" not in html  # the QR code, rendered on the server
    assert "no-store" in page["Cache-Control"]
    secret = re.search(r'class="security-secret">([A-Z2-7 ]+)<', html).group(1)
    device = TOTPDevice.objects.get(user=staff, confirmed=False)
    assert secret.replace(" ", "") in device.config_url

    assert browser.post(ENROL, {"otp_token": "12345"}).status_code == 200  # not a code
    assert TOTPDevice.objects.filter(user=staff, confirmed=True).count() == 0

    response = browser.post(ENROL, {"otp_token": current_code(device), "next": "/admin/"})
    assert response.status_code == 200
    codes = re.findall(r"<li><code>([a-z2-7]+)</code></li>", response.content.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert TOTPDevice.objects.filter(user=staff, confirmed=True).count() == 1
    assert browser.get(CHANGELIST).status_code == 200  # this session is verified by the first code
    assert AccessAction.OTP_ENROLLED in actions(user=staff)
    # Shown once: the enrolment page now starts a new set-up instead of showing the codes again.
    assert not set(codes) & set(re.findall(r"[a-z2-7]{8}", browser.get(ENROL).content.decode()))


def test_a_password_alone_cannot_replace_an_enrolled_authenticator(browser, staff):
    authenticator_for(staff)
    password_login(browser, staff.username)
    response = browser.get(ENROL)
    assert response.status_code == 302 and response["Location"].startswith(VERIFY)
    assert not TOTPDevice.objects.filter(user=staff, confirmed=False).exists()


def test_an_account_that_never_enrolled_cannot_enrol_once_its_set_up_period_is_over(browser, staff, settings):
    staff.date_joined = timezone.now() - timedelta(days=settings.STAFF_2FA_ENROL_DAYS, minutes=1)
    staff.save()
    password_login(browser, staff.username)
    assert browser.get("/admin/")["Location"].startswith(ENROL)
    page = browser.get(ENROL)
    assert page.status_code == 403
    assert 'class="security-secret"' not in page.content.decode()
    assert 'name="otp_token"' not in page.content.decode()
    assert browser.post(ENROL, {"otp_token": "123456"}).status_code == 403
    assert not TOTPDevice.objects.filter(user=staff).exists()  # no secret was ever made
    assert browser.get(CHANGELIST).status_code == 302
    assert actions(user=staff)[-1] == AccessAction.OTP_ENROL_REFUSED


def test_a_reset_reopens_the_set_up_period_and_is_recorded(browser, staff, settings):
    staff.date_joined = timezone.now() - timedelta(days=90)
    staff.save()
    call_command("reset_staff_2fa", staff.username, stdout=io.StringIO())
    reset = AccessEvent.objects.get(action=AccessAction.OTP_RESET)
    assert (reset.object_id, reset.username) == (str(staff.pk), "manage.py reset_staff_2fa")

    password_login(browser, staff.username)
    page = browser.get(ENROL)
    assert page.status_code == 200 and 'class="security-secret"' in page.content.decode()
    later = timezone.now() + timedelta(days=settings.STAFF_2FA_ENROL_DAYS, minutes=1)
    assert not services.may_enrol(user=staff, now=later)  # reopened for the period only


def test_an_enrolled_account_can_replace_its_authenticator_after_the_period_once_verified(browser, staff):
    staff.date_joined = timezone.now() - timedelta(days=90)
    staff.save()
    device = authenticator_for(staff)
    password_login(browser, staff.username)
    browser.post(VERIFY, {"otp_token": current_code(device)})
    assert browser.get(ENROL).status_code == 200


def test_anonymous_visitors_of_the_second_factor_pages_go_to_the_login(browser):
    for url in (VERIFY, ENROL):
        response = browser.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_logout_is_open_before_the_second_factor_and_is_recorded(browser, staff):
    authenticator_for(staff)
    password_login(browser, staff.username)
    assert browser.post(reverse("admin:logout")).status_code == 200
    assert actions(user=staff) == [AccessAction.LOGIN, AccessAction.LOGOUT]


# --- lockout ---------------------------------------------------------------------------------------


def test_repeated_wrong_passwords_lock_out_with_a_429_page(browser, staff, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert password_login(browser, staff.username, "wrong password").status_code == 200
    response = password_login(browser, staff.username, "wrong password")
    assert response.status_code == 429
    body = response.content.decode()
    assert "Too many failed attempts" in body and "15 minutes" in body
    assert response["Retry-After"] == "900"
    # Locked: even the right password is refused, and nothing opens.
    assert password_login(browser, staff.username).status_code == 429
    assert browser.get(CHANGELIST).status_code == 302
    assert AccessEvent.objects.filter(action=AccessAction.LOGIN_FAILED, username=staff.username).count() >= 5
    assert AccessEvent.objects.filter(action=AccessAction.LOCKED_OUT).exists()
    # The lockout ends after the cool-off.
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert password_login(browser, staff.username).status_code == 302


def test_a_failed_login_with_an_unknown_username_does_not_record_what_was_typed(browser, staff):
    password_login(browser, "my secret password typed in the wrong box", "x")
    event = AccessEvent.objects.get(action=AccessAction.LOGIN_FAILED)
    assert event.username == "" and event.user is None


def test_wrong_second_factor_codes_count_towards_the_lockout(browser, staff, settings):
    device = authenticator_for(staff)
    password_login(browser, staff.username)
    wrong = "000000" if current_code(device) != "000000" else "111111"
    start = timezone.now()
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        # Past django-otp's growing wait, so that each attempt is really checked.
        with time_machine.travel(start + timedelta(seconds=40 * (attempt + 1))):
            response = browser.post(VERIFY, {"otp_token": wrong})
    assert response.status_code == 429
    # The half-logged-in session is gone, and the password no longer helps.
    assert browser.get(CHANGELIST)["Location"].startswith("/admin/login/")
    with time_machine.travel(start + timedelta(seconds=400)):
        assert password_login(browser, staff.username).status_code == 429


def test_behind_the_proxy_the_lockout_and_the_audit_use_the_routers_hop(browser, staff, settings):
    settings.DSR_BEHIND_PROXY = True
    forwarded = {"HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7", "REMOTE_ADDR": "10.0.0.1"}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = password_login(browser, "nobody-at-all", "x", **forwarded)
    assert response.status_code == 429
    assert set(AccessEvent.objects.values_list("ip", flat=True)) == {"203.0.113.7"}
    # The client-chosen first hop does not give a fresh counter: the router's hop is what counts.
    other = {"HTTP_X_FORWARDED_FOR": "1.2.3.4, 203.0.113.7", "REMOTE_ADDR": "10.0.0.1"}
    assert password_login(browser, staff.username, **other).status_code == 429
    elsewhere = {"HTTP_X_FORWARDED_FOR": "203.0.113.99", "REMOTE_ADDR": "10.0.0.1"}
    assert password_login(browser, staff.username, **elsewhere).status_code == 302


def test_the_second_factor_gate_follows_the_script_prefix_the_admin_is_mounted_under(browser, staff):
    # The gate's admin paths are computed once per URLconf and script prefix (security/middleware.py):
    # a portal served under /portal must guard /portal/admin/ and send staff to /portal/... pages.
    # (Django's WSGI handler sets the prefix from SCRIPT_NAME; the test client does not, so we do.)
    from django.urls import set_script_prefix

    authenticator_for(staff)
    password_login(browser, staff.username)
    assert browser.get("/admin/")["Location"].startswith(VERIFY)
    set_script_prefix("/portal/")
    try:
        response = browser.get("/admin/", SCRIPT_NAME="/portal")
    finally:
        set_script_prefix("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/portal" + VERIFY)
    assert browser.get("/admin/")["Location"].startswith(VERIFY)  # and back without the prefix
