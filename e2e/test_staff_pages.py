"""Every staff page at 1280×800 and 1440×900: no horizontal scrolling, and every panel wide enough to work in.

A "panel" is a visible ``fieldset`` or ``.module`` of the page's content (the navigation sidebar and the
index's "recent actions" column are navigation, not panels). The pages: the 2FA pages (login, enrolment,
backup codes, verification), the admin index, the dashboard, every changelist of the admin site (read
from its registry, so a new model is covered without editing this test), a change page of each, the
pages the list's bulk actions return to (with their per-request report), and the staff forms (log a
request, the yearly metrics, record a correction). At 1280 each panel is at least 600 px wide (the
actions panel was once squeezed to 15 px).
"""

import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult, get_date_max
from playwright.sync_api import expect

from dsr_requests import roles, services, staff_actions
from dsr_requests.models import RequestState, RequestType
from dsr_requests.tests.factories import (
    ProcessingActivityFactory,
    RightsRequestFactory,
    StaffUserFactory,
    approved_request,
)
from e2e.browser import _authenticator_code
from registrations.erasure_ledger import record_erasure
from registrations.models import FitFailureCount, ForgeInstallation, UsageCount
from registrations.tests.factories import RegistrationFactory

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery staple 42"  # a throwaway user in the test database
VIEWPORTS = [{"width": 1280, "height": 800}, {"width": 1440, "height": 900}]
MIN_PANEL = 600

MEASURE = """() => {
    const panels = [...document.querySelectorAll('fieldset, .module')]
        .filter(el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden')
        // Work panels: not the navigation sidebar, nor the index's "recent actions" column.
        .filter(el => !el.closest('#nav-sidebar, #content-related'))
        .map(el => ({
            what: el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
                + [...el.classList].map(c => '.' + c).join('')
                + ' "' + ((el.querySelector('h2, caption, legend') || {}).textContent || '')
                    .trim().slice(0, 40) + '"',
            width: Math.round(el.getBoundingClientRect().width),
        }));
    return {scroll: document.documentElement.scrollWidth, viewport: window.innerWidth, panels};
}"""


class Layout:
    """Measures each page as it is shown and keeps every problem, so one run reports them all."""

    def __init__(self, page, viewport):
        self.page, self.viewport, self.problems, self.seen = page, viewport, [], []

    def check(self, where):
        self.page.wait_for_load_state("load")
        found = self.page.evaluate(MEASURE)
        self.seen.append(where)
        if found["scroll"] > found["viewport"]:
            self.problems.append(f"{where}: scrolls sideways ({found['scroll']} > {found['viewport']} px)")
        if self.viewport["width"] == 1280:
            for panel in found["panels"]:
                if panel["width"] < MIN_PANEL:
                    self.problems.append(f"{where}: {panel['what']} is {panel['width']} px wide")

    def visit(self, path, where=None):
        response = self.page.goto(path)
        assert response.status < 400, f"{path}: HTTP {response.status}"
        self.check(where or path)


def _seed():
    """At least one object of every model the admin shows, and requests in the states staff meet."""
    ProcessingActivityFactory()
    RightsRequestFactory(state=RequestState.VERIFYING)
    RightsRequestFactory(state=RequestState.IN_REVIEW, by_agent=True, agent_name="Agent Smith")
    RightsRequestFactory(state=RequestState.ON_HOLD, held_from_state=RequestState.IN_REVIEW)
    RightsRequestFactory(
        state=RequestState.COMPLETED,
        received_at=timezone.now() - timedelta(days=20),
        closed_at=timezone.now(),
    )
    first = StaffUserFactory(username="first.approver", roles=[roles.APPROVER])
    approved_request(RequestType.DELETE, approver=first)
    copy, _token = approved_request(RequestType.COPY, approver=first)
    services.start_fulfilment(rights_request=copy, actor=first)  # runs inline: a run, an export, emails
    change, _token = approved_request(RequestType.CHANGE, approver=first)
    services.record_rectification(
        rights_request=change, actor=first, provider="rights_requests", field="name", new_value="Ada King"
    )
    registration = RegistrationFactory()
    UsageCount.objects.create(day=timezone.localdate(), module="identity-proof", count=3)
    ForgeInstallation.objects.create(
        installation_id="ari:cloud:ecosystem::installation/seeded",
        app_id="7d3b1f0e-4c55-4b1e-9a2f-1c0ffee00001",
        cloud_id="cloud-seeded",
        site_url=registration.base_url,
        state=ForgeInstallation.State.INSTALLED,
        installed_at=timezone.now(),
        updated_at=timezone.now(),
        last_event_at=timezone.now(),
        registration=registration,
    )
    FitFailureCount.objects.create(day=timezone.localdate(), reason="expired", count=2)
    record_erasure(client_keys=[registration.client_key], reference="DSR-SEEDED", actor=first)
    # The third-party admins: a failed login as axes records it, and a job in the database queue.
    seen = {"user_agent": "chromium", "ip_address": "127.0.0.1", "username": "someone", "http_accept": "*/*"}
    AccessAttempt.objects.create(
        **seen, path_info="/admin/login/", get_data="", post_data="", failures_since_start=1
    )
    AccessFailureLog.objects.create(**seen, path_info="/admin/login/")
    AccessLog.objects.create(**seen, path_info="/admin/login/")
    DBTaskResult.objects.create(
        args_kwargs={"args": [], "kwargs": {}},
        task_path="dsr_requests.tasks.send_requester_email",
        backend_name="default",
        run_after=get_date_max(),  # "as soon as possible", which every backend takes
        exception_class_path="",
        traceback="",
    )


def _admin_pages():
    """(changelist URL, a change page URL or None) for every model registered on the admin site."""
    pages = []
    for model in admin.site._registry:
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        first = model._default_manager.order_by("pk").first()
        change = (
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[first.pk]) if first else None
        )
        pages.append((opts.label, changelist, change))
    return pages


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["1280x800", "1440x900"])
def test_every_staff_page_fits_the_window_and_no_panel_is_squeezed(site, new_context, viewport):
    staff = StaffUserFactory(roles=[roles.PRIVACY_ADMIN], is_superuser=True)
    staff.set_password(PASSWORD)
    staff.save()
    _seed()
    page = new_context(viewport=viewport).new_page()
    layout = Layout(page, viewport)

    # The 2FA pages, as a new staff member meets them: login, enrolment, backup codes; then verification.
    page.goto(f"{site}/admin/login/?next=/admin/")
    layout.check("login")
    page.get_by_label("Username").fill(staff.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/2fa/enrol/.*"))
    layout.check("2FA enrolment")
    page.locator("input[name=otp_token]").fill(
        _authenticator_code(page.locator("code.security-secret").inner_text())
    )
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator("ul.security-backup-codes li")).to_have_count(10)
    layout.check("2FA backup codes")
    second = new_context(viewport=viewport).new_page()
    second.goto(f"{site}/admin/login/?next=/admin/")
    second.get_by_label("Username").fill(staff.get_username())
    second.get_by_label("Password").fill(PASSWORD)
    second.get_by_role("button", name="Log in").click()
    second.wait_for_url(re.compile(r".*/admin/2fa/verify/.*"))
    Layout.check(_Borrow(layout, second), "2FA verification")

    page.goto(f"{site}/admin/")
    layout.check("admin index")
    layout.visit(f"{site}{reverse('admin:dsr_requests_rightsrequest_dashboard')}", "dashboard")
    layout.visit(f"{site}{reverse('admin:dsr_requests_rightsrequest_log')}", "log a request")
    layout.visit(f"{site}{reverse('admin:dsr_requests_rightsrequest_metrics')}", "yearly metrics")
    layout.visit(f"{site}{reverse('admin:dsr_requests_rectification_add')}", "record a correction")
    missing = []
    for label, changelist, change in _admin_pages():
        layout.visit(f"{site}{changelist}", f"{label} list")
        if change:
            layout.visit(f"{site}{change}", f"{label} change page")
        else:
            missing.append(label)
    assert not missing, f"no object to open the change page of: {missing}"

    # The page each bulk action returns to, with its report.
    list_url = f"{site}{reverse('admin:dsr_requests_rightsrequest_changelist')}"
    for action in staff_actions.BULK_ACTIONS:
        page.goto(list_url)
        page.locator("input.action-select").first.check()
        page.locator("select[name=action]").select_option(label=str(action.bulk))
        page.get_by_role("button", name="Go").first.click()
        expect(page.locator(".messagelist")).to_be_visible()
        layout.check(f"after the bulk action {action.name}")

    assert len(layout.seen) > 20
    assert not layout.problems, "\n".join(layout.problems)


class _Borrow:
    """Measure another page into the same report."""

    def __init__(self, layout, page):
        self.page, self.viewport, self.problems, self.seen = (
            page,
            layout.viewport,
            layout.problems,
            layout.seen,
        )
