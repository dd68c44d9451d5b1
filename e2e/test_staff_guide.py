"""A support agent's day, as docs/staff-guide.md tells it, walked in chromium at 1280×800.

Triage the queue, check an identity, approve, fulfil a copy, delete with four eyes, extend, refuse, log an
emailed request. Each step is asserted like any browser test. With ``STAFF_GUIDE_SCREENSHOTS`` set to a
folder (``python3 dev.py screenshots`` sets it to docs/staff-guide/) each step also saves the screenshot
the guide shows, so the guide's pictures are always of the product as it is.
"""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from dsr_requests import roles, rollup, services
from dsr_requests.models import RequestState, RequestType, RightsRequest
from dsr_requests.tests.factories import ProcessingActivityFactory, RightsRequestFactory, StaffUserFactory
from e2e.browser import staff_login
from e2e.test_journey import tiny_png

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery staple 42"  # throwaway users in the test database
VIEWPORT = {"width": 1280, "height": 800}
LIST = "/admin/dsr_requests/rightsrequest/"
# The guide's pictures, in the order of the day (docs/staff-guide.md shows each).
SHOTS = (
    "01-queue",
    "02-dashboard",
    "03-identity-check",
    "04-approve",
    "05-fulfil-copy",
    "06-four-eyes",
    "07-extend",
    "08-refuse",
    "09-log-request",
)


class Camera:
    """Saves the page as the guide's screenshot ``name`` when a folder is given; checks the name is known."""

    def __init__(self, page):
        self.page = page
        folder = os.environ.get("STAFF_GUIDE_SCREENSHOTS")
        self.folder = Path(folder) if folder else None
        self.taken = []

    def shoot(self, name, focus=None, block="start"):
        """``focus``: the element the picture is about, scrolled to the top (or ``block``) of the window."""
        assert name in SHOTS, name
        self.taken.append(name)
        if focus is not None:
            focus.evaluate("(el, block) => el.scrollIntoView({block})", block)
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(self.folder / f"{name}.png"))  # the viewport: 1280×800


def _staff(role, username):
    user = StaffUserFactory(roles=[role], username=username)
    user.set_password(PASSWORD)
    user.save()
    return user


def _requested(request_type, name, email):
    """A request as the public form makes it, its address confirmed (so in ``verifying``)."""
    rights_request = services.submit_request(
        request_type=request_type,
        name=name,
        email=email,
        details="Please include my support tickets.",
        site_url="",
        concerns="account",
        transfer_to="",
        transfer_email="",
        country="GB",
        actor=services.REQUESTER,
    )
    rights_request, _token = services.confirm_email(reference=rights_request.reference)
    return rights_request


def _act(page, button, text=None):
    form = page.locator("form.dsr-action").filter(has=page.get_by_role("button", name=button, exact=True))
    if text is not None:
        form.locator("textarea").fill(text)
    return form


def test_a_day_of_support_work_as_the_staff_guide_shows_it(site, new_context):
    ProcessingActivityFactory()
    agent = _staff(roles.APPROVER, "sam.agent")
    colleague = _staff(roles.APPROVER, "kim.colleague")
    copy = _requested(RequestType.COPY, "Grace Hopper", "grace@example.org")
    services.add_identity_document(
        rights_request=copy, content=tiny_png(), content_type="image/png", actor=services.REQUESTER
    )
    deletion = _requested(RequestType.DELETE, "Alan Turing", "alan@example.org")
    late = _requested(RequestType.REVIEW, "Ada Lovelace", "ada@example.org")
    refused = _requested(RequestType.REVIEW, "Charles Babbage", "charles@example.org")
    for r in (deletion, late, refused):  # their identity was proven earlier
        RightsRequest.objects.filter(pk=r.pk).update(state=RequestState.IN_REVIEW)
    rollup.rebuild()  # those rows changed behind the services: recount the dashboard, as dsr_rollup does
    RightsRequestFactory(
        state=RequestState.COMPLETED,
        received_at=timezone.now() - timedelta(days=12),
        closed_at=timezone.now(),
    )
    page = new_context(viewport=VIEWPORT).new_page()
    camera = Camera(page)
    staff_login(page, site, agent, PASSWORD)

    # 1. Triage: the queue, most urgent first; the dashboard's counts.
    page.goto(f"{site}{LIST}")
    expect(page.locator("#result_list")).to_contain_text("Identity check needed")
    camera.shoot("01-queue")
    page.goto(f"{site}{LIST}dashboard/")
    expect(page.get_by_role("heading", name="Deadlines")).to_be_visible()
    # The dashboard agrees with the queue: three ready for review, one waiting for its identity check.
    expect(page.get_by_role("row", name="Ready for review")).to_contain_text("3")
    expect(page.get_by_role("row", name="Identity check needed")).to_contain_text("1")
    camera.shoot("02-dashboard")

    # 2. Check an identity: download the document, record the decision.
    page.goto(f"{site}{LIST}{copy.pk}/change/")
    expect(page.get_by_role("heading", name="Documents awaiting your decision")).to_be_visible()
    form = _act(page, "Identity document accepted", "Passport photo matches the name and the email's domain.")
    camera.shoot("03-identity-check", focus=page.locator(".dsr-documents"))
    form.get_by_role("button", name="Identity document accepted").click()
    expect(page.locator(".messagelist")).to_contain_text("updated")

    # 3. Approve.
    expect(page.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    camera.shoot("04-approve", focus=page.locator(".dsr-actions"))
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("updated")

    # 4. Fulfil the copy: the job runs, exports, emails the requester and completes the request.
    page.get_by_role("button", name="Start fulfilment").click()
    expect(page.locator(".messagelist")).to_contain_text("updated")
    page.reload()
    expect(page.locator(".field-fulfilment_progress")).to_contain_text("steps done")
    camera.shoot("05-fulfil-copy", focus=page.locator(".field-fulfilment_progress"), block="center")
    assert RightsRequest.objects.get(pk=copy.pk).state == RequestState.COMPLETED

    # 5. Delete with four eyes: the agent approves; the page says a colleague must give the second approval.
    page.goto(f"{site}{LIST}{deletion.pk}/change/")
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(".dsr-unavailable")).to_contain_text("another staff member must approve")
    camera.shoot("06-four-eyes", focus=page.locator(".dsr-unavailable"), block="end")
    other = new_context(viewport=VIEWPORT).new_page()
    staff_login(other, site, colleague, PASSWORD)
    other.goto(f"{site}{LIST}{deletion.pk}/change/")
    other.get_by_role("button", name="Give second approval of the erasure").click()
    expect(other.locator(".messagelist")).to_contain_text("updated")
    assert RightsRequest.objects.get(pk=deletion.pk).erasure_approved_by == colleague

    # 6. Extend a request that needs more time.
    page.goto(f"{site}{LIST}{late.pk}/change/")
    form = _act(page, "Extend the deadline", "We must search three systems for your tickets.")
    camera.shoot("07-extend", focus=form)
    form.get_by_role("button", name="Extend the deadline").click()
    expect(page.locator(".messagelist")).to_contain_text("updated")
    assert RightsRequest.objects.get(pk=late.pk).extended_at is not None

    # 7. Refuse, with the reason the requester reads and the ground the log keeps.
    page.goto(f"{site}{LIST}{refused.pk}/change/")
    form = _act(page, "Reject", "We hold no personal data about this address.")
    form.get_by_label("Ground (for the request log; not sent)").select_option("nothing_held")
    camera.shoot("08-refuse", focus=form)
    form.get_by_role("button", name="Reject").click()
    expect(page.locator(".messagelist")).to_contain_text("updated")
    assert RightsRequest.objects.get(pk=refused.pk).state == RequestState.REJECTED

    # 8. Log a request that came by email.
    page.goto(f"{site}{LIST}")
    page.get_by_role("link", name="Log a request").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Log a request")
    camera.shoot("09-log-request")

    assert tuple(camera.taken) == SHOTS
