"""Form rules: transfer details, identity documents recognised by content."""

from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import given
from hypothesis import strategies as st

from dsr_requests.forms import IdentityDocumentForm, RightsRequestForm, sniff_content_type

BASE = {"request_type": "review", "name": "Ada", "email": "ada@example.org"}


def test_transfer_fields_are_dropped_for_other_request_types():
    form = RightsRequestForm({**BASE, "transfer_to": "organisation", "transfer_email": "dpo@x.example"})
    assert form.is_valid()
    assert (form.cleaned_data["transfer_to"], form.cleaned_data["transfer_email"]) == ("", "")


def test_transfer_to_the_requester_needs_no_organisation_email():
    form = RightsRequestForm({**BASE, "request_type": "transfer", "transfer_to": "requester"})
    assert form.is_valid()


def test_site_url_without_scheme_is_taken_as_https():
    form = RightsRequestForm({**BASE, "site_url": "acme.atlassian.net"})
    assert form.is_valid() and form.cleaned_data["site_url"] == "https://acme.atlassian.net"


def test_name_with_control_characters_is_refused():
    assert "name" in RightsRequestForm({**BASE, "name": "Ada\x07"}).errors


def test_content_types_are_recognised_by_their_magic_bytes():
    assert sniff_content_type(b"%PDF-1.4") == "application/pdf"
    assert sniff_content_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff_content_type(b"\xff\xd8\xff\xdb") == "image/jpeg"
    assert sniff_content_type(b"GIF89a") is None
    assert sniff_content_type(b"") is None


def test_document_form_reports_the_sniffed_type_not_the_claimed_one():
    upload = SimpleUploadedFile("photo.pdf", b"\x89PNG\r\n\x1a\nrest", content_type="application/pdf")
    form = IdentityDocumentForm(files={"document": upload})
    assert form.is_valid() and form.cleaned_data["content_type"] == "image/png"


@given(st.binary(max_size=64))
def test_sniffing_any_bytes_gives_an_accepted_type_or_none(head):
    assert sniff_content_type(head) in {None, "application/pdf", "image/png", "image/jpeg"}
