"""A prerendered page equals the full render for any slot values, or falls back to rendering in full."""

import logging

import pytest
from django.template.loader import render_to_string
from django.test import RequestFactory, override_settings
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st

from artemis_portal import prerender
from artemis_portal.prerender import PrerenderedPage
from dsr_requests.forms import AccountCodeForm
from dsr_requests.views import ACCOUNT_ID_SHAPE, ACCOUNT_PROOF_PAGE

TEMPLATE = "dsr_requests/account_proof.html"
# Text that autoescaping changes, plus anything else: the pieces must escape exactly like the template.
any_text = st.text(min_size=1, max_size=60) | st.sampled_from(['<script>"x"</script>', "a&b", "'", "é中"])
account_ids = st.from_regex(ACCOUNT_ID_SHAPE, fullmatch=True)


def locmem_templates(templates):
    """Templates served from memory (Django's locmem loader), for pages that break the slot rule."""
    return override_settings(
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {
                    "loaders": [("django.template.loaders.locmem.Loader", templates)],
                    "context_processors": ["django.template.context_processors.csrf"],
                },
            }
        ]
    )


@given(site_url=any_text, account_id=account_ids)
def test_identity_page_pieces_equal_the_full_render_for_any_site_and_account(site_url, account_id):
    request = RequestFactory().get("/connect/identity-proof/")
    with translation.override("en-gb"):
        fast = ACCOUNT_PROOF_PAGE.render(request, site_url=site_url, account_id=account_id)
        full = render_to_string(
            TEMPLATE, {"site_url": site_url, "account_id": account_id, "form": AccountCodeForm()}, request
        )
    assert fast == full


@pytest.mark.parametrize(
    "body",
    [
        "<p>{{ site_url|upper }}</p>",  # a filter on a slot value
        "<p>{{ site_url }} ({{ site_url|length }} characters)</p>",  # something computed from it
        "<form>{% csrf_token %}{{ site_url }}</form>",  # something different on every request
    ],
)
def test_a_template_that_breaks_the_slot_rule_is_rendered_in_full_every_time(body, caplog):
    page = PrerenderedPage("page.html", slots=["site_url"])
    request = RequestFactory().get("/")
    with locmem_templates({"page.html": body}), caplog.at_level(logging.WARNING, "artemis.templates"):
        html = page.render(request, site_url="<b>")
        if "csrf" not in body:  # the CSRF token differs on every render; the rest must be equal
            assert html == render_to_string("page.html", {"site_url": "<b>"}, request)
    assert page._pieces[translation.get_language()] is prerender._FULL
    assert "cannot be prerendered" in caplog.text


def test_a_plain_template_is_split_once_per_language_and_filled_in():
    page = PrerenderedPage("page.html", slots=["a", "b"], context=lambda: {"fixed": "<i>"})
    request = RequestFactory().get("/")
    with locmem_templates({"page.html": "{{ fixed }}|{{ a }}|{{ b }}|{{ a }}"}):
        assert page.render(request, a="1&", b='"2"') == "&lt;i&gt;|1&amp;|&quot;2&quot;|1&amp;"
        assert page.render(request, a="x", b="y") == "&lt;i&gt;|x|y|x"
    assert list(page._pieces) == [translation.get_language()]
