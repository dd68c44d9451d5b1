"""Admin session expiry: idle timeout, absolute age, and no persistent cookie."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from security.models import AccessAction, AccessEvent
from security.tests.conftest import password_login

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:dsr_requests_rightsrequest_changelist")


def test_an_idle_admin_session_ends_after_the_idle_timeout(client, staff, settings):
    settings.ADMIN_IDLE_TIMEOUT_MINUTES = 30
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        client.force_login(staff)
        assert client.get(CHANGELIST).status_code == 200
    with time_machine.travel(start + timedelta(minutes=29), tick=False):
        assert client.get(CHANGELIST).status_code == 200  # activity restarts the clock
    with time_machine.travel(start + timedelta(minutes=29 + 31), tick=False):
        response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert "_auth_user_id" not in client.session
    assert AccessEvent.objects.get(action=AccessAction.LOGOUT).detail == "idle timeout"


def test_an_active_admin_session_still_ends_at_the_absolute_age(client, staff, settings):
    settings.ADMIN_IDLE_TIMEOUT_MINUTES = 30
    settings.SESSION_COOKIE_AGE = 2 * 60 * 60
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        client.force_login(staff)
    for minutes in range(20, 120, 20):
        with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
            assert client.get(CHANGELIST).status_code == 200
    with time_machine.travel(start + timedelta(minutes=121), tick=False):
        response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert AccessEvent.objects.get(action=AccessAction.LOGOUT).detail == "session age limit"


def test_public_pages_do_not_touch_the_admin_session_clock(client, staff, settings):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        client.force_login(staff)
        seen = client.session["security_seen_at"]
    with time_machine.travel(start + timedelta(minutes=10), tick=False):
        assert client.get("/").status_code == 200
    assert client.session["security_seen_at"] == seen


def test_the_session_cookie_ends_with_the_browser(browser, staff):
    response = password_login(browser, staff.username)
    assert response.status_code == 302
    cookie = response.cookies["sessionid"]
    assert cookie.value and not cookie["max-age"] and not cookie["expires"]
