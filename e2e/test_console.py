"""A support agent's day in a real browser: the queue, the actions, the second factor, the requester's pages.

Each test is one item of the staff console and requester pages, seen in chromium against the live server
at 1280×800: what the page shows, in what order, and what it says when something is not allowed.
"""

import re
from datetime import datetime, timedelta

import pytest
import time_machine
from django.utils import timezone
from playwright.sync_api import expect

from dsr_requests import roles, services, tokens
from dsr_requests.models import RequestState, RequestType, RightsRequest
from dsr_requests.tests.conftest import LONDON
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory, approved_request
from e2e.browser import _authenticator_code, staff_login

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery staple 42"  # a throwaway user in the test database
VIEWPORT = {"width": 1280, "height": 800}
LIST = "/admin/dsr_requests/rightsrequest/"


def _staff(*role_names, username=None):
    user = StaffUserFactory(roles=list(role_names), **({"username": username} if username else {}))
    user.set_password(PASSWORD)
    user.save()
    return user


def _due(day, state=RequestState.IN_REVIEW, **fields):
    r = RightsRequestFactory(state=state, **fields)
    r.policy_due_on = r.statutory_due_on = r.effective_due_on = day
    r.save()
    return r


def _references(page):
    page.wait_for_load_state("load")
    return [text.strip() for text in page.locator("#result_list th.field-reference a").all_inner_texts()]


# --- the second factor keeps where the agent was going ----------------------------------------------------


def test_signing_in_with_the_second_factor_keeps_the_page_the_agent_was_going_to(site, new_context):
    agent = _staff(roles.REVIEWER)
    rights_request = RightsRequestFactory(state=RequestState.IN_REVIEW)
    target = f"{LIST}{rights_request.pk}/change/"

    # First sign-in: enrolment, backup codes, then on to the request.
    page = new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{site}{target}")
    page.get_by_label("Username").fill(agent.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/2fa/enrol/.*"))
    page.locator("input[name=otp_token]").fill(
        _authenticator_code(page.locator("code.security-secret").inner_text())
    )
    page.get_by_role("button", name="Confirm").click()
    backup_codes = page.locator("ul.security-backup-codes li").all_inner_texts()
    page.get_by_role("link", name="Continue to the admin").click()
    page.wait_for_url(f"{site}{target}")
    expect(page.locator("h2", has_text="Actions")).to_be_visible()

    # Later sign-ins (a backup code each: the app's code of this 30 s step is used up), then the
    # dashboard the agent had bookmarked.
    later = new_context(viewport=VIEWPORT).new_page()
    later.goto(f"{site}/admin/dsr_requests/rightsrequest/dashboard/")
    later.get_by_label("Username").fill(agent.get_username())
    later.get_by_label("Password").fill(PASSWORD)
    later.get_by_role("button", name="Log in").click()
    later.wait_for_url(re.compile(r".*/admin/2fa/verify/.*"))
    later.locator("input[name=otp_token]").fill(backup_codes[0])
    later.get_by_role("button", name="Verify").click()
    later.wait_for_url(f"{site}/admin/dsr_requests/rightsrequest/dashboard/")

    # A next that leaves the site is not followed.
    other = new_context(viewport=VIEWPORT).new_page()
    other.goto(f"{site}/admin/2fa/verify/?next=https://evil.example/")
    other.get_by_label("Username").fill(agent.get_username())
    other.get_by_label("Password").fill(PASSWORD)
    other.get_by_role("button", name="Log in").click()
    other.wait_for_url(re.compile(r".*/admin/2fa/verify/.*"))
    other.locator("input[name=otp_token]").fill(backup_codes[1])
    other.get_by_role("button", name="Verify").click()
    other.wait_for_url(f"{site}/admin/")


# --- the queue --------------------------------------------------------------------------------------------


def test_the_queue_is_most_urgent_first_with_staff_state_names_due_soon_and_search(site, new_context):
    agent = _staff(roles.REVIEWER)
    today = timezone.localdate()
    later = _due(today + timedelta(days=40))
    urgent = _due(today + timedelta(days=1))
    overdue = _due(today - timedelta(days=3))
    checking = _due(today + timedelta(days=20), state=RequestState.VERIFYING, account_id="557058:abc-123")
    closed = _due(today - timedelta(days=30), state=RequestState.COMPLETED, received_at=timezone.now())
    page = new_context(viewport=VIEWPORT).new_page()
    staff_login(page, site, agent, PASSWORD)

    page.goto(f"{site}{LIST}")
    assert _references(page) == [r.reference for r in (overdue, urgent, checking, later, closed)]
    expect(page.locator("#result_list")).to_contain_text("Identity check needed")
    # Every column in view at 1280 px: the list does not scroll sideways inside its box either.
    assert page.evaluate(
        "(() => { const r = document.querySelector('.results'); return r.scrollWidth <= r.clientWidth; })()"
    )
    expect(page.locator(".field-due", has_text="past the statutory date")).to_have_count(1)
    page.get_by_role("link", name="Newest first").click()
    page.wait_for_url(re.compile(r".*order=newest.*"))
    assert _references(page)[0] == closed.reference

    page.goto(f"{site}{LIST}")
    page.get_by_role("link", name="Due within 5 working days (overdue included)").click()
    page.wait_for_url(re.compile(r".*due=soon.*"))
    assert set(_references(page)) == {overdue.reference, urgent.reference}

    page.goto(f"{site}{LIST}")
    for term, found in [
        (later.reference.removeprefix("DSR-").lower(), later),
        ("557058:abc-123", checking),
    ]:
        page.locator("#searchbar").fill(term)
        with page.expect_navigation():
            page.locator("#searchbar").press("Enter")
        assert _references(page) == [found.reference]


@time_machine.travel(datetime(2024, 6, 7, 10, tzinfo=LONDON), tick=True)  # a Friday
def test_on_a_friday_the_dashboard_counts_mondays_request_as_due_soon(site, new_context, settings):
    settings.DSR_HOLIDAY_COUNTRY = "GB"
    agent = _staff(roles.REVIEWER)
    monday = _due(datetime(2024, 6, 10).date())
    page = new_context(viewport=VIEWPORT).new_page()
    staff_login(page, site, agent, PASSWORD)
    page.goto(f"{site}/admin/dsr_requests/rightsrequest/dashboard/")
    page.get_by_role("link", name=re.compile("due within 5 working days")).click()
    page.wait_for_url(re.compile(r".*due=soon.*"))
    assert _references(page) == [monday.reference]


# --- actions only where allowed, and why not --------------------------------------------------------------


def test_a_deletion_waiting_for_a_second_approver_says_who_approved_and_a_closed_request_offers_nothing(
    site, new_context
):
    first = _staff(roles.APPROVER, username="first.approver")
    deletion, _token = approved_request(RequestType.DELETE, approver=first)
    done = RightsRequestFactory(state=RequestState.COMPLETED)
    page = new_context(viewport=VIEWPORT).new_page()
    staff_login(page, site, first, PASSWORD)

    page.goto(f"{site}{LIST}{deletion.pk}/change/")
    why = page.locator(".dsr-unavailable")
    expect(why).to_contain_text(
        "Waiting for the second approval of the erasure: approved by first.approver; another staff member "
        "must approve before the data is deleted."
    )
    expect(why).to_contain_text("You gave the first approval: another staff member must give the second")
    expect(page.get_by_role("button", name="Start fulfilment")).to_have_count(0)

    page.goto(f"{site}{LIST}{done.pk}/change/")
    expect(page.locator(".dsr-closed")).to_contain_text("no workflow action can be taken")
    expect(page.get_by_role("button", name="Change regime")).to_have_count(0)
    expect(page.locator("form.dsr-action")).to_have_count(0)


def test_a_bulk_approval_reports_each_request(site, new_context):
    approver = _staff(roles.APPROVER)
    other = _staff(roles.APPROVER, username="bob")
    ready = [_due(timezone.localdate() + timedelta(days=10 + n)) for n in range(3)]
    already = services.approve(rights_request=_due(timezone.localdate() + timedelta(days=9)), actor=other)
    page = new_context(viewport=VIEWPORT).new_page()
    staff_login(page, site, approver, PASSWORD)
    page.goto(f"{site}{LIST}")
    for r in (*ready, already):
        page.locator(f"input.action-select[value='{r.pk}']").check()
    page.locator("select[name=action]").select_option(label="Approve selected requests")
    page.get_by_role("button", name="Go").first.click()
    expect(page.locator(".messagelist")).to_have_text(
        f"3 approved; {already.reference} skipped: Already approved by bob."
    )
    assert RightsRequest.objects.filter(state=RequestState.APPROVED, approved_by=approver).count() == 3


# --- the requester's pages --------------------------------------------------------------------------------


def test_the_country_list_is_in_alphabetical_order_of_the_names_shown(site, new_context):
    page = new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{site}/requests/new/")
    names = page.locator("select[name=country] option").all_inner_texts()[1:]
    assert names == sorted(names, key=str.casefold)
    assert names.index("Australia") < names.index("Austria")


def test_only_accepted_submissions_count_and_at_the_limit_the_form_keeps_what_was_typed(
    site, new_context, settings
):
    settings.DSR_RATE_SUBMIT_PER_IP = "1/3600"
    page = new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{site}/requests/new/")
    page.get_by_role("button", name="Send my request").click()  # nothing filled in: errors, no attempt used
    expect(page.locator("#error-summary")).to_be_visible()

    def fill(name, email):
        page.get_by_label("Give me a copy of my personal data").check()
        page.get_by_label("Your name").fill(name)
        page.get_by_label("Your email address").fill(email)
        page.get_by_role("button", name="Send my request").click()

    fill("Ada Lovelace", "ada@example.org")
    page.wait_for_url(f"{site}/requests/sent/")
    page.goto(f"{site}/requests/new/")
    fill("Grace Hopper", "grace@example.org")
    expect(page.locator("#error-summary")).to_contain_text("Everything you typed is still here")
    expect(page.locator("#error-summary")).to_contain_text(re.compile(r"send it again in about \d+ minutes?"))
    expect(page.get_by_label("Your name")).to_have_value("Grace Hopper")
    expect(page.get_by_label("Your email address")).to_have_value("grace@example.org")
    assert RightsRequest.objects.count() == 1


def test_an_upload_too_large_is_a_form_error_naming_the_limit_and_the_status_page_names_its_steps(
    site, new_context, settings, tmp_path
):
    settings.DSR_UPLOAD_MAX_BYTES = 1024
    token, token_hash = tokens.new_status_token()
    RightsRequestFactory(
        state=RequestState.VERIFYING,
        email_confirmed_at=timezone.now(),
        status_token_hash=token_hash,
        status_token=token,
    )
    big = tmp_path / "passport.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"0" * 200_000)
    page = new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{site}/requests/status/{token}/")
    expect(page.get_by_role("heading", name="Confirm your Atlassian account")).to_be_visible()
    expect(page.get_by_text("“Privacy request: confirm your account”").first).to_be_visible()
    page.get_by_label("Identity document (PDF, PNG or JPEG)").set_input_files(str(big))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#error-summary")).to_contain_text("The file is too large: the limit is 1.0")
    expect(page.get_by_role("heading", name="This link cannot be used")).to_have_count(0)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Your request DSR-")
