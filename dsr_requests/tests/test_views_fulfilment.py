"""Downloads from the status page (emailed one-time code) and transfer links: used once, expire, logged."""

import io
import zipfile
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from dsr_requests import roles, services
from dsr_requests.models import DataExport, ExportDownload, RequestType
from dsr_requests.tests.conftest import ask_for_code, download, export_folder
from dsr_requests.tests.factories import StaffUserFactory, approved_request

pytestmark = pytest.mark.django_db


def test_the_status_page_offers_the_download_while_the_export_is_valid(client, ready_copy):
    _request, token = ready_copy
    page = client.get(reverse("dsr_requests:status", args=[token])).content.decode()
    assert "Email me a download code" in page
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        page = client.get(reverse("dsr_requests:status", args=[token])).content.decode()
    assert "Email me a download code" not in page


def test_the_emailed_code_downloads_the_zip_once_and_the_download_is_logged(client, ready_copy, committed):
    rights_request, token = ready_copy
    code = ask_for_code(client, token, committed)

    response = download(client, token, code)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert "data.json" in archive.namelist()
    assert ExportDownload.objects.filter(export__request=rights_request, channel="code").count() == 1
    assert rights_request.events.filter(public=True, note__startswith="Your data was downloaded").exists()

    again = download(client, token, code)
    assert again.status_code == 400
    assert "already been used" in again.content.decode()
    assert ExportDownload.objects.count() == 1


def test_an_expired_code_is_refused(client, ready_copy, committed):
    _request, token = ready_copy
    code = ask_for_code(client, token, committed)
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        response = download(client, token, code)
    assert response.status_code == 400
    assert "expired" in response.content.decode()


def test_a_code_after_the_export_expired_is_refused(client, ready_copy, committed):
    rights_request, token = ready_copy
    code = ask_for_code(client, token, committed)
    DataExport.objects.filter(request=rights_request).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = download(client, token, code)
    assert response.status_code == 400
    assert "ended" in response.content.decode()


def test_asking_for_a_code_without_an_export_says_so(client, committed):
    _request, token = approved_request(RequestType.COPY)
    response = client.post(reverse("dsr_requests:download-code", args=[token]), follow=True)
    assert "no copy to download" in response.content.decode()
    assert not mail.outbox


def test_a_new_code_replaces_the_unused_one(client, ready_copy, committed):
    _request, token = ready_copy
    first = ask_for_code(client, token, committed)
    second = ask_for_code(client, token, committed)
    assert download(client, token, first).status_code == 400
    assert download(client, token, second).status_code == 200


def test_a_code_of_another_request_does_not_work(client, ready_copy, committed):
    _request, token = ready_copy
    code = ask_for_code(client, token, committed)
    _other, other_token = approved_request(RequestType.COPY)
    assert download(client, other_token, code).status_code == 400


def test_a_wrong_status_token_is_a_404(client):
    assert (
        client.post(reverse("dsr_requests:download", args=["0" * 64]), {"code": "ABCDEFGH"}).status_code
        == 404
    )


class TestNeverA500(TestCase):
    """Whatever is typed as a code or put in a transfer link, the answer is a clear 4xx, never a 500."""

    @given(code=st.text(max_size=40))
    def test_download_codes(self, code):
        _request, token = approved_request(RequestType.COPY)
        response = self.client.post(reverse("dsr_requests:download", args=[token]), {"code": code})
        assert response.status_code in (400, 429)

    @given(
        token=st.text(
            alphabet=st.characters(exclude_characters="/?#%", exclude_categories=["Cs"]),
            min_size=1,
            max_size=80,
        )
    )
    def test_transfer_links(self, token):
        response = self.client.post(f"/requests/transfer/{token}/")
        assert response.status_code in (404, 429)


def test_a_lost_export_file_is_a_clear_404_and_does_not_use_up_the_code(client, ready_copy, committed):
    rights_request, token = ready_copy
    code = ask_for_code(client, token, committed)
    export = DataExport.objects.get(request=rights_request)
    stored = (export_folder() / export.file_name).read_bytes()
    (export_folder() / export.file_name).unlink()

    response = download(client, token, code)
    assert response.status_code == 404
    assert "no longer available" in response.content.decode()
    assert not ExportDownload.objects.exists()

    (export_folder() / export.file_name).write_bytes(stored)  # staff prepared it again
    assert download(client, token, code).status_code == 200


def test_an_unreachable_export_storage_is_a_503_and_the_code_still_works(
    client, ready_copy, committed, settings, unreachable_s3
):
    """A real S3 client against a loopback port where nothing listens: the storage cannot be reached."""
    _request, token = ready_copy
    code = ask_for_code(client, token, committed)
    settings.EXPORT_STORAGE = "storages.backends.s3.S3Storage"
    settings.EXPORT_STORAGE_OPTIONS = unreachable_s3("artemis-exports")
    response = download(client, token, code)
    page = response.content.decode()
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    # The site's "briefly unavailable" page, not the dead-link one: the code works again soon.
    assert "Briefly unavailable" in page and "still works" in page
    assert "This link cannot be used" not in page and "no-store" in response["Cache-Control"]
    assert not ExportDownload.objects.exists()

    settings.EXPORT_STORAGE = ""  # the storage is back
    response = download(client, token, code)
    assert response.status_code == 200
    assert zipfile.is_zipfile(io.BytesIO(b"".join(response.streaming_content)))


def test_exports_are_written_to_and_served_from_the_configured_storage(client, committed, settings, tmp_path):
    shared = tmp_path / "shared-bucket"
    settings.EXPORT_STORAGE = "django.core.files.storage.FileSystemStorage"
    settings.EXPORT_STORAGE_OPTIONS = {"location": str(shared)}
    approver = StaffUserFactory(roles=[roles.APPROVER])
    rights_request, token = approved_request(
        RequestType.COPY, approver=approver, email="elsewhere@example.org"
    )
    with committed():
        services.start_fulfilment(rights_request=rights_request, actor=approver)
    mail.outbox.clear()
    export = DataExport.objects.get(request=rights_request)

    assert [p.name for p in shared.iterdir()] == [export.file_name]
    assert not export_folder().exists()  # nothing in the local folder
    response = download(client, token, ask_for_code(client, token, committed))
    assert response.status_code == 200
    assert zipfile.is_zipfile(io.BytesIO(b"".join(response.streaming_content)))
