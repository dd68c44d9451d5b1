"""axe-core on every public page (and the admin login): no violation of impact serious or critical.

Each page is checked as a person meets it, in chromium against the live server: empty and with
validation errors, the status page in the states that show different forms, the error pages. Minor and
moderate findings are printed but do not fail. The axe version is the one locked in package-lock.json.
"""

import re
from datetime import UTC, datetime

import pytest
import time_machine
from django.utils import timezone
from playwright.sync_api import expect

from dsr_requests import roles, services, tokens
from dsr_requests.models import RequestState, RequestType, TransferTo
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory, approved_request
from e2e.browser import blocking_violations, describe_violations, run_axe

pytestmark = pytest.mark.browser


@pytest.fixture
def audit(new_context, axe_script):
    """``audit.check(where)`` runs axe on the page as it is; ``audit.assert_clean()`` fails with a report
    of every blocking violation on every page checked."""

    class Audit:
        page = new_context(bypass_csp=True).new_page()
        blocking = []

        def check(self, where):
            result = run_axe(self.page)
            found = blocking_violations(result)
            minor = [v for v in result["violations"] if v not in found]
            if minor:
                print(describe_violations(f"{where} (not failing)", minor))
            if found:
                self.blocking.append(describe_violations(where, found))

        def assert_clean(self):
            assert not self.blocking, "\n\n".join(self.blocking)

    return Audit()


def status_token_for(**fields):
    """A request in the given state with a status token; returns the token."""
    token, token_hash = tokens.new_status_token()
    RightsRequestFactory(
        email_confirmed_at=timezone.now(), status_token_hash=token_hash, received_at=timezone.now(), **fields
    )
    return token


def test_the_public_pages_have_no_serious_accessibility_violations(site, audit, settings):
    page = audit.page
    page.goto(f"{site}/")
    audit.check("landing page")

    page.goto(f"{site}/requests/new/")
    audit.check("request form")
    page.get_by_role("button", name="Send my request").click()
    expect(page.locator("#error-summary")).to_be_focused()
    audit.check("request form with errors")
    page.get_by_label("Give me a copy of my personal data").check()
    page.get_by_label("Your name").fill("Ada Lovelace")
    page.get_by_label("Your email address").fill("ada@example.org")
    page.get_by_role("button", name="Send my request").click()
    page.wait_for_url(f"{site}/requests/sent/")
    audit.check("request sent")

    submitted = RightsRequestFactory(request_type=RequestType.COPY)
    page.goto(f"{site}/requests/confirm/?token={tokens.confirmation_token(submitted)}")
    audit.check("confirmation page")
    page.goto(f"{site}/requests/confirm/?token=not-a-token")
    audit.check("confirmation link not valid")

    page.goto(f"{site}/requests/status/")
    audit.check("lost link")
    page.get_by_role("button", name="Email me my links").click()
    expect(page.locator("#error-summary")).to_be_visible()
    audit.check("lost link with errors")
    page.get_by_label("Your email address").fill("ada@example.org")
    page.get_by_role("button", name="Email me my links").click()
    expect(page.get_by_role("status")).to_be_visible()
    audit.check("lost link sent")
    confirmed = RightsRequestFactory(
        request_type=RequestType.COPY,
        email_confirmed_at=timezone.now(),
        status_token_hash=tokens.new_status_token()[1],
    )
    page.goto(f"{site}/requests/renew/?token={services.renewal_token(confirmed)}")
    audit.check("renew status link")

    assert page.goto(f"{site}/no-such-page/").status == 404
    audit.check("404 page")

    settings.DSR_RATE_STATUS_PER_IP = "1/60"
    # The live server is a thread of this process: freezing the clock keeps both lookups in one window.
    with time_machine.travel(datetime(2026, 6, 1, 12, 0, tzinfo=UTC), tick=False):
        page.goto(f"{site}/requests/status/{'0' * 64}/")
        assert page.goto(f"{site}/requests/status/{'0' * 64}/").status == 429
    audit.check("429 page")

    page.goto(f"{site}/admin/login/")
    audit.check("admin login")
    page.get_by_label("Username").fill("nobody")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".errornote")).to_be_visible()
    audit.check("admin login with errors")

    audit.assert_clean()


def test_the_status_and_transfer_pages_have_no_serious_accessibility_violations_in_any_state(
    site, audit, tmp_path, smtp_server
):
    page = audit.page
    status = f"{site}/requests/status/"

    verifying = status_token_for(request_type=RequestType.COPY, state=RequestState.VERIFYING)
    page.goto(status + verifying + "/")
    audit.check("status: verifying (identity proof forms)")
    page.get_by_role("button", name="Show me a code").click()
    expect(page.locator(".code")).to_be_visible()
    audit.check("status: account code shown")
    code = page.locator(".code").inner_text()  # screen readers get it spelled out, one character at a time
    expect(page.locator(".visually-hidden").filter(has_text=" ".join(code))).to_have_count(1)
    not_a_document = tmp_path / "notes.txt"
    not_a_document.write_text("not a document")
    page.get_by_label("Identity document (PDF, PNG or JPEG)").set_input_files(not_a_document)
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(re.compile(r"/document/$"))
    expect(page.locator("#error-summary")).to_be_focused()
    audit.check("status: upload refused (error summary)")
    page.get_by_role("button", name="Withdraw").click()
    page.wait_for_url(re.compile(r"/withdraw/$"))
    expect(page.locator("#error-summary")).to_be_focused()
    audit.check("status: withdrawal not ticked (error)")
    expect(page).to_have_title(re.compile(r"^Error: "))
    tick = page.get_by_label("Yes, withdraw my request")
    expect(tick).to_have_accessible_description(re.compile(r"\w"))  # the error, read with the box

    staff = StaffUserFactory(roles=[roles.APPROVER])
    held = approved_request(RequestType.REVIEW, approver=staff)
    held_token = held[1]
    services.put_on_hold(
        reason="clarification",
        rights_request=held[0],
        actor=staff,
        message="Which Atlassian site do you use?",
    )
    page.goto(status + held_token + "/")
    audit.check("status: on hold (question to answer)")

    ready, ready_token = approved_request(RequestType.COPY, approver=staff)
    services.start_fulfilment(rights_request=ready, actor=staff)
    page.goto(status + ready_token + "/")
    audit.check("status: completed copy (download)")
    page.get_by_label("Download code from our email").fill("WRONG123")
    page.get_by_role("button", name="Download (ZIP)").click()
    page.wait_for_url(re.compile(r"/download/$"))
    expect(page.locator("#error-summary")).to_be_focused()
    audit.check("status: download code refused")

    transfer, _transfer_token = approved_request(
        RequestType.TRANSFER, approver=staff, transfer_to=TransferTo.REQUESTER, email="me@example.org"
    )
    services.start_fulfilment(rights_request=transfer, actor=staff)
    (link,) = {
        match.group(0)
        for _to, message in smtp_server.messages
        for match in [
            re.search(r"https?://\S+/requests/transfer/\S+/", message.get_body(("plain",)).get_content())
        ]
        if match
    }
    page.goto(link)
    audit.check("transfer link page")

    audit.assert_clean()
