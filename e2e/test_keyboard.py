"""The request form with the keyboard alone, under the site's real Content-Security-Policy.

Tab order follows the page; every field is reachable and labelled; a failed submission moves focus to
the error summary (static/js/error_summary.js, no inline script), whose links lead to the fields.
"""

import re

import pytest
from playwright.sync_api import expect

from dsr_requests.models import RightsRequest

pytestmark = pytest.mark.browser

FORM_TAB_ORDER = [
    "id_request_type_0",  # a radio group is one tab stop; arrow keys choose within it
    "id_name",
    "id_email",
    "id_country",
    "id_site_url",
    "id_concerns_0",
    "id_details",
    "id_transfer_to_0",
    "id_transfer_email",
    "submit",
]


def focused(page):
    """The focused element's id (``submit`` for the form's button)."""
    return page.evaluate(
        """() => {
            const el = document.activeElement;
            if (el.tagName === 'BUTTON' && el.type === 'submit') return 'submit';
            return el.id || el.tagName.toLowerCase() + (el.className ? '.' + el.className : '');
        }"""
    )


def has_visible_focus_ring(page):
    """The focused element draws an outline at least 2px wide in a colour other than the page's."""
    style = page.evaluate(
        """() => {
            const s = getComputedStyle(document.activeElement);
            return {style: s.outlineStyle, width: parseFloat(s.outlineWidth), colour: s.outlineColor};
        }"""
    )
    return style["style"] != "none" and style["width"] >= 2 and style["colour"] != "rgb(255, 255, 255)"


def test_the_form_can_be_filled_and_sent_with_the_keyboard_alone(site, new_context, smtp_server):
    page = new_context().new_page()
    page.goto(f"{site}/requests/new/")

    page.keyboard.press("Tab")
    assert focused(page) == "a.skip-link"
    expect(page.locator(".skip-link")).to_be_visible()  # shown when focused
    page.keyboard.press("Enter")
    assert focused(page) == "main"

    order = []
    for _ in range(len(FORM_TAB_ORDER) + 2):
        page.keyboard.press("Tab")
        order.append(focused(page))
        assert has_visible_focus_ring(page), order[-1]
        if order[-1] == "submit":
            break
        if order[-1] == "id_request_type_0":
            page.keyboard.press("Space")  # review...
            for _ in range(4):
                page.keyboard.press("ArrowDown")  # ...change, delete, processing, copy
        elif order[-1] == "id_name":
            page.keyboard.type("Katherine Johnson")
        elif order[-1] == "id_email":
            page.keyboard.type("katherine@example.org")
        elif order[-1] == "id_details":
            page.keyboard.type("A copy, please.")
    assert order == FORM_TAB_ORDER
    expect(page.get_by_label("Give me a copy of my personal data")).to_be_checked()
    page.keyboard.press("Enter")

    expect(page).to_have_url(f"{site}/requests/sent/")
    request = RightsRequest.objects.get()
    assert (request.request_type, request.name) == ("copy", "Katherine Johnson")
    smtp_server.wait_for(1)


def test_after_an_error_focus_is_on_the_summary_whose_links_lead_to_the_fields(site, new_context):
    page = new_context().new_page()
    page.goto(f"{site}/requests/new/")
    page.get_by_label("Your email address").fill("not an address")
    page.get_by_role("button", name="Send my request").focus()
    page.keyboard.press("Enter")

    summary = page.locator("#error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()
    expect(page).to_have_title(re.compile(r"^Error: "))
    links = summary.get_by_role("link")
    expect(links).to_have_count(3)  # request type, name, email
    for link in links.all():  # every link points at an element of the page
        target = link.get_attribute("href")
        assert target.startswith("#") and page.locator(target).count() == 1, target

    page.keyboard.press("Tab")
    expect(links.nth(0)).to_be_focused()
    page.keyboard.press("Enter")  # to the radio group: the next Tab lands in it
    page.keyboard.press("Tab")
    assert focused(page) == "id_request_type_0"

    summary.get_by_role("link", name="Your name").focus()
    page.keyboard.press("Enter")
    assert focused(page) == "id_name"
    summary.get_by_role("link", name="Your email address").focus()
    page.keyboard.press("Enter")
    assert focused(page) == "id_email"
    # The field says what is wrong, to a screen reader too.
    email = page.locator("#id_email")
    assert email.get_attribute("aria-invalid") == "true"
    expect(email).to_have_accessible_description(re.compile("valid email"))
