"""The daily dsr_purge command: expired exports, leftover documents, stray files, old personal data."""

import io
import os
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from dsr_requests import roles, services
from dsr_requests.models import DataExport, IdentityDocument, RequestState, RequestType, RightsRequest
from dsr_requests.tests.conftest import export_folder
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory, approved_request

S = RequestState
pytestmark = pytest.mark.django_db


def purge(*args):
    out = io.StringIO()
    call_command("dsr_purge", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def expired_export(committed):
    approver = StaffUserFactory(roles=[roles.APPROVER])
    rights_request, _token = approved_request(RequestType.COPY, approver=approver)
    with committed():
        services.start_fulfilment(rights_request=rights_request, actor=approver)
    export = DataExport.objects.get(request=rights_request)
    DataExport.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    return export


def test_expired_exports_are_deleted_and_marked_purged(expired_export):
    path = export_folder() / expired_export.file_name
    assert path.exists()
    output = purge()
    assert "expired exports: 1" in output
    assert not path.exists()
    expired_export.refresh_from_db()
    assert expired_export.purged_at is not None


def test_a_dry_run_changes_nothing_and_says_what_it_would_do(expired_export):
    old = RightsRequestFactory(state=S.COMPLETED, closed_at=timezone.now() - timedelta(days=800))
    output = purge("--dry-run")
    assert "[dry run]" in output and "would remove: 1 export(s)" in output and "1 request(s)" in output
    assert (export_folder() / expired_export.file_name).exists()
    assert RightsRequest.objects.get(pk=old.pk).email


def test_requests_closed_longer_than_the_retention_lose_their_personal_data(settings):
    settings.DSR_RETENTION_MONTHS = 24
    old = RightsRequestFactory(state=S.COMPLETED, closed_at=timezone.now() - timedelta(days=24 * 31 + 1))
    recent = RightsRequestFactory(state=S.COMPLETED, closed_at=timezone.now() - timedelta(days=300))
    open_request = RightsRequestFactory(state=S.IN_REVIEW)
    purge()
    old.refresh_from_db()
    assert (old.name, old.email, old.details) == ("", "", "")
    assert old.erased_at is not None and old.email_hash  # a tombstone keeps the blind index
    assert RightsRequest.objects.get(pk=recent.pk).email
    assert RightsRequest.objects.get(pk=open_request.pk).email


def test_identity_documents_left_on_closed_requests_are_deleted():
    closed = RightsRequestFactory(state=S.REJECTED, rejection_reason="No proof")
    still_checking = RightsRequestFactory(state=S.VERIFYING)
    for rights_request in (closed, still_checking):
        IdentityDocument.objects.create(
            request=rights_request, content="AAAA", content_type="image/png", size=3
        )
    assert "identity documents of closed requests: 1" in purge()
    assert list(IdentityDocument.objects.values_list("request", flat=True)) == [still_checking.pk]


def test_stray_and_stale_partial_export_files_are_deleted(expired_export):
    folder = export_folder()
    DataExport.objects.filter(pk=expired_export.pk).update(expires_at=timezone.now() + timedelta(days=1))
    two_days_ago = (timezone.now() - timedelta(days=2)).timestamp()
    stray = folder / "DSR-GONE00-zip.export"
    stray.write_bytes(b"x")
    os.utime(stray, (two_days_ago, two_days_ago))
    just_published = folder / "DSR-NEW000-zip.export"  # its row is being written right now
    just_published.write_bytes(b"x")
    stale = folder / ".DSR-GONE00-zip.export.k2x9ab_1.partial"
    stale.write_bytes(b"x")
    os.utime(stale, (two_days_ago, two_days_ago))
    fresh = folder / ".DSR-BUSY00-zip.export.q7rt0w_2.partial"
    fresh.write_bytes(b"x")
    foreign = folder / "notes-from-ops.txt"  # not ours: a shared storage keeps it
    foreign.write_bytes(b"x")
    os.utime(foreign, (two_days_ago, two_days_ago))
    assert "stray export files: 2" in purge()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [fresh.name, foreign.name, just_published.name, expired_export.file_name]
    )


def test_an_unreachable_export_storage_is_a_one_line_command_error(settings, unreachable_s3):
    settings.EXPORT_STORAGE = "storages.backends.s3.S3Storage"
    settings.EXPORT_STORAGE_OPTIONS = unreachable_s3("artemis-exports")
    with pytest.raises(CommandError) as refused:
        purge()
    assert "\n" not in str(refused.value) and str(refused.value).startswith("Purge failed")


def test_quiet_at_verbosity_zero(expired_export):
    out = io.StringIO()
    call_command("dsr_purge", verbosity=0, stdout=out)
    assert out.getvalue() == ""
