"""A late refusal in a real browser: the warning is visible, the tick is required, the panel is full width.

GDPR / UK GDPR Art. 12(3)-(4): a refusal after the statutory date is late; staff are warned before anything
is sent, and the late action is on the timeline (docs/compliance.md, section 3).
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from dsr_requests import roles
from dsr_requests.deadlines import Regime
from dsr_requests.models import RequestState, RightsRequest
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory
from e2e.browser import staff_login

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery staple 42"  # a throwaway user in the test database


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, {"width": 1440, "height": 900}])
def test_a_late_refusal_warns_needs_the_tick_and_lands_on_the_timeline(site, new_context, viewport):
    staff = StaffUserFactory(roles=[roles.APPROVER])
    staff.set_password(PASSWORD)
    staff.save()
    rights_request = RightsRequestFactory(
        state=RequestState.IN_REVIEW,
        regime=Regime.UK_GDPR,
        received_at=timezone.now() - timedelta(days=45),
    )
    page = new_context(viewport=viewport).new_page()
    staff_login(page, site, staff, PASSWORD)
    page.goto(f"{site}/admin/dsr_requests/rightsrequest/{rights_request.pk}/change/")

    warning = page.locator(".dsr-late")
    expect(warning).to_contain_text("past its statutory date")
    panel = page.locator(".dsr-actions").bounding_box()
    assert panel["width"] >= 600, panel  # below the change form, not squeezed beside it
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]

    reject = page.locator("form.dsr-action").filter(has=page.get_by_role("button", name="Reject"))
    reject.get_by_label("Reason (sent to the requester)").fill("We hold no data about you.")
    reject.get_by_label("Ground (for the request log; not sent)").select_option("nothing_held")
    tick = reject.get_by_label("I know this is late")
    expect(tick).to_have_attribute("required", "")
    tick.check()
    reject.get_by_role("button", name="Reject").click()
    expect(page.locator(".messagelist")).to_contain_text(f"Done: {rights_request.reference} updated.")
    assert RightsRequest.objects.get(pk=rights_request.pk).state == RequestState.REJECTED
    expect(page.get_by_text("days after the statutory date")).to_be_visible()
