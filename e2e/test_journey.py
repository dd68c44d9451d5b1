"""The whole copy request in a real browser: form, emailed links, identity document, staff, download.

Two browser contexts (two people, separate cookies): the requester on the public pages, a staff member
in the admin. Every email is read from the real SMTP server the site sends to; every click is a real
click in chromium against the live server.
"""

import io
import json
import re
import struct
import zipfile
import zlib

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from dsr_requests import roles
from dsr_requests.models import RequestState, RightsRequest
from dsr_requests.tests.factories import StaffUserFactory
from e2e.browser import staff_login

pytestmark = pytest.mark.browser

REQUESTER = {"name": "Grace Hopper", "email": "grace@example.org", "details": "Everything you hold about me."}
STAFF_PASSWORD = "correct horse battery staple 42"  # a throwaway user in the test database


def tiny_png():
    """A real 1x1 PNG (signature, IHDR, IDAT, IEND), as a phone's photo of a document would start."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\xff\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


class Inbox:
    """The requester's view of the SMTP sink: each call returns the next new email's plain text."""

    def __init__(self, smtp_server, address):
        self.smtp, self.address, self.seen = smtp_server, address, 0

    def next(self, subject_part):
        """The next email to the address, which must have ``subject_part`` in its subject."""
        self.smtp.wait_for(self.seen + 1)
        recipients, message = self.smtp.messages[self.seen]
        self.seen += 1
        assert recipients == [self.address]
        assert subject_part in message["Subject"], message["Subject"]
        assert message.get_body(("html",)) is not None  # every email has an HTML part too
        return message.get_body(("plain",)).get_content()

    def link(self, subject_part, path_prefix):
        text = self.next(subject_part)
        match = re.search(r"https?://\S+" + re.escape(path_prefix) + r"\S*", text)
        assert match, f"no {path_prefix} link in: {text}"
        return match.group(0)


def press(admin, button, reference):
    """Click a workflow button on the admin change page; returns once the action is done and the page
    (the same URL) has reloaded with its confirmation."""
    with admin.expect_response(lambda r: "/act/" in r.url and r.request.method == "POST") as posted:
        button.click()
    assert posted.value.status == 302
    admin.wait_for_load_state()
    expect(admin.locator(".messagelist")).to_contain_text(f"Done: {reference} updated.")


def test_a_copy_request_goes_from_the_form_to_the_downloaded_zip_in_a_real_browser(
    site, new_context, smtp_server, tmp_path
):
    staff = StaffUserFactory(roles=[roles.APPROVER])
    staff.set_password(STAFF_PASSWORD)
    staff.save()
    inbox = Inbox(smtp_server, REQUESTER["email"])
    page = new_context().new_page()

    # The public form.
    page.goto(f"{site}/")
    page.get_by_role("link", name="Make a request").click()
    page.get_by_label("Give me a copy of my personal data").check()
    page.get_by_label("Your name").fill(REQUESTER["name"])
    page.get_by_label("Your email address").fill(REQUESTER["email"])
    page.get_by_label("Where do you live?").select_option("GB")
    page.get_by_label("Details (optional)").fill(REQUESTER["details"])
    page.get_by_role("button", name="Send my request").click()
    expect(page).to_have_url(f"{site}/requests/sent/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")

    # The confirmation link, from the email: a button first, so link scanners cannot use it up.
    page.goto(inbox.link("Please confirm your email address", "/requests/confirm/"))
    page.get_by_role("button", name="Confirm my email address").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Your request DSR-")
    status_url = inbox.link("your email address is confirmed", "/requests/status/")
    assert page.url == status_url  # the emailed status link is the page the confirmation led to
    reference = RightsRequest.objects.get().reference

    # Identity: a document, uploaded on the status page opened from the email.
    page.goto(status_url)
    expect(page.get_by_text("Checking identity")).to_be_visible()
    document = tmp_path / "passport.png"
    document.write_bytes(tiny_png())
    page.get_by_label("Identity document (PDF, PNG or JPEG)").set_input_files(document)
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_contain_text("we received your document")
    expect(page.get_by_text("You have sent 1 document")).to_be_visible()

    # Staff, in a browser context of their own: find the request, accept the document, approve, fulfil.
    admin = new_context().new_page()
    staff_login(admin, site, staff, STAFF_PASSWORD)
    admin.goto(f"{site}/admin/dsr_requests/rightsrequest/")
    admin.get_by_role("link", name=reference).click()
    expect(admin.get_by_role("heading", name="Actions")).to_be_visible()
    accept = admin.locator("form.dsr-action").filter(
        has=admin.get_by_role("button", name="Identity document accepted")
    )
    accept.get_by_label("What you checked, and why (staff only)").fill("Passport photo matches the name.")
    press(admin, accept.get_by_role("button", name="Identity document accepted"), reference)
    inbox.next("your identity is verified")
    press(admin, admin.get_by_role("button", name="Approve", exact=True), reference)
    press(admin, admin.get_by_role("button", name="Start fulfilment"), reference)  # the job runs inline
    assert RightsRequest.objects.get().state == RequestState.COMPLETED

    # The requester: the copy is ready; a one-time code by email opens it.
    inbox.next("your data is ready to download")
    page.goto(status_url)
    expect(page.get_by_text("Your request is complete.")).to_be_visible()
    page.get_by_role("button", name="Email me a download code").click()
    expect(page.get_by_role("status")).to_contain_text("We emailed you a download code")
    code = re.search(r"download code is \*?\*?([0-9A-Z]{8})", inbox.next("your download code")).group(1)
    page.get_by_label("Download code from our email").fill(code)
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download (ZIP)").click()
    download = download_info.value
    assert download.suggested_filename == f"{reference}-personal-data.zip"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    archive = zipfile.ZipFile(io.BytesIO(saved.read_bytes()))
    assert archive.testzip() is None
    assert {"README.txt", "data.json"} <= set(archive.namelist())
    assert reference in archive.read("README.txt").decode()
    data = json.loads(archive.read("data.json"))
    assert data["request"] == {"reference": reference, "type": "copy"}
    (mine,) = next(p for p in data["providers"] if p["key"] == "rights_requests")["records"]
    assert (mine["name"], mine["email"], mine["details"]) == (
        REQUESTER["name"],
        REQUESTER["email"],
        REQUESTER["details"],
    )
    assert get_user_model().objects.filter(pk=staff.pk).exists()
