"""Export files in the export storage (EXPORT_STORAGE, else EXPORT_DIR), which web and worker share.

Real storages only: a second FileSystemStorage configured by class path and options, Django's
InMemoryStorage as a non-local storage (written through the temporary-file path, as S3 is), and a real
S3Storage aimed at a loopback port where nothing listens for an unreachable bucket.
"""

import hashlib
import io
import re
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, InMemoryStorage
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from dsr_requests import exports, providers, roles, services
from dsr_requests.models import DataExport, ExportDownload, RequestType, TransferTo
from dsr_requests.tests.factories import StaffUserFactory, approved_request
from dsr_requests.tests.test_exports import _subject_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def elsewhere(settings, tmp_path):
    """EXPORT_STORAGE: a second FileSystemStorage (class path + options), a folder apart from EXPORT_DIR."""
    location = tmp_path / "export-storage"
    settings.EXPORT_STORAGE = "django.core.files.storage.FileSystemStorage"
    settings.EXPORT_STORAGE_OPTIONS = {"location": str(location)}
    return location


@pytest.fixture
def in_memory(settings):
    """EXPORT_STORAGE: a STORAGES alias for Django's InMemoryStorage (not local: the temp-file path)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    settings.EXPORT_STORAGE = "exports"
    storage = exports.export_storage()
    yield storage
    for name in storage.listdir("")[1]:
        storage.delete(name)


@pytest.fixture
def unreachable(settings, unreachable_s3_options):
    """Point EXPORT_STORAGE at a real S3Storage no one answers for; call it to switch (after writing)."""

    def switch():
        settings.EXPORT_STORAGE = "storages.backends.s3.S3Storage"
        settings.EXPORT_STORAGE_OPTIONS = unreachable_s3_options

    return switch


@pytest.fixture
def ready_copy(committed):
    """A completed copy request with its export written; returns (request, status token)."""
    approver = StaffUserFactory(roles=[roles.APPROVER])
    rights_request, token = approved_request(RequestType.COPY, approver=approver, email="reader@example.org")
    with committed():
        services.start_fulfilment(rights_request=rights_request, actor=approver)
    mail.outbox.clear()
    return rights_request, token


@pytest.fixture
def ready_transfer(committed):
    """A completed transfer with its export written; returns (request, the one-time link's path)."""
    approver = StaffUserFactory(roles=[roles.APPROVER])
    rights_request, _token = approved_request(
        RequestType.TRANSFER, approver=approver, transfer_to=TransferTo.REQUESTER, email="mover@example.org"
    )
    with committed():
        services.start_fulfilment(rights_request=rights_request, actor=approver)
    (message,) = [m for m in mail.outbox if "transferred" in m.subject]
    mail.outbox.clear()
    return rights_request, re.search(r"(/requests/transfer/[0-9a-f]+/)", message.body).group(1)


def ask_for_code(client, token, committed):
    with committed():
        assert client.post(reverse("dsr_requests:download-code", args=[token])).status_code == 302
    (message,) = mail.outbox
    mail.outbox.clear()
    return re.search(r"download code is \*?\*?([0-9A-Z]{8})", message.body).group(1)


def download(client, token, code):
    return client.post(reverse("dsr_requests:download", args=[token]), {"code": code})


def nothing_was_used_up(rights_request):
    export = DataExport.objects.get(request=rights_request)
    return (
        not ExportDownload.objects.filter(export__request=rights_request).exists()
        and not export.codes.filter(used_at__isnull=False).exists()
        and export.link_used_at is None
        and not rights_request.events.filter(note__startswith="Your data was downloaded").exists()
    )


# --- where the files go --------------------------------------------------------------------------------


def test_the_worker_writes_to_the_configured_storage_and_the_download_reads_from_it_not_export_dir(
    client, elsewhere, ready_copy, committed
):
    rights_request, token = ready_copy
    export = DataExport.objects.get(request=rights_request)

    assert [p.name for p in elsewhere.iterdir()] == [export.file_name]
    assert not Path(settings.EXPORT_DIR).exists()
    code = ask_for_code(client, token, committed)
    response = download(client, token, code)

    assert response.status_code == 200
    assert "data.json" in zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()


def test_with_no_export_storage_set_the_files_are_in_the_local_export_dir(ready_copy):
    rights_request, _token = ready_copy
    export = DataExport.objects.get(request=rights_request)
    storage = exports.export_storage()

    assert isinstance(storage, FileSystemStorage)
    assert [p.name for p in Path(settings.EXPORT_DIR).iterdir()] == [export.file_name]


def test_a_storage_setting_that_names_nothing_importable_says_which_setting(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.EXPORT_STORAGE = "storages.backends.nowhere.Storage"
    with pytest.raises(ImproperlyConfigured, match="^EXPORT_STORAGE 'storages.backends.nowhere.Storage'"):
        exports.export_storage()


def test_a_transfer_is_written_to_a_non_local_storage_and_its_link_streams_it(
    client, in_memory, ready_transfer
):
    rights_request, path = ready_transfer
    export = DataExport.objects.get(request=rights_request, kind="json")

    assert in_memory.listdir("")[1] == [export.file_name]
    response = client.post(path)

    assert response.status_code == 200
    assert b'"providers"' in b"".join(response.streaming_content)


# --- writing: whole or nothing, one file per name ------------------------------------------------------


def _write(name, storage, rights_request, subject, progress=None):
    return exports.write_export(
        name,
        storage=storage,
        kind="zip",
        rights_request=rights_request,
        subject=subject,
        providers=providers.all_providers(),
        activities=[],
        progress=progress,
    )


def _killed(count):
    raise KeyboardInterrupt  # what a SIGTERM or a dying worker looks like to the code that is running


@pytest.mark.parametrize("kind", ["local", "non-local"])
def test_a_write_killed_halfway_leaves_nothing_under_the_final_name_and_a_rerun_leaves_one_file(
    tmp_path, kind
):
    storage = FileSystemStorage(location=tmp_path / "exports") if kind == "local" else InMemoryStorage()
    rights_request, subject = _subject_with(1200)  # progress is reported at 1000 records: killed there
    name = f"{rights_request.reference}-zip.export"

    with pytest.raises(KeyboardInterrupt):
        _write(name, storage, rights_request, subject, progress=_killed)
    assert not storage.exists(name)
    _write(name, storage, rights_request, subject)
    _size, _sha, records = _write(name, storage, rights_request, subject)

    assert records == 1201
    assert storage.listdir("")[1] == [name]  # the partial (local) was renamed over; nothing duplicated
    archive = zipfile.ZipFile(io.BytesIO(b"".join(exports.iter_plain(name, storage=storage))))
    assert "data.json" in archive.namelist()


def test_a_rewrite_killed_halfway_keeps_the_earlier_complete_file_in_a_non_local_storage():
    storage = InMemoryStorage()
    rights_request, subject = _subject_with(1200)
    name = f"{rights_request.reference}-zip.export"
    _size, sha256, _records = _write(name, storage, rights_request, subject)

    with pytest.raises(KeyboardInterrupt):
        _write(name, storage, rights_request, subject, progress=_killed)

    plain = b"".join(exports.iter_plain(name, storage=storage))
    assert hashlib.sha256(plain).hexdigest() == sha256


class RacingStorage(InMemoryStorage):
    """An InMemoryStorage where another writer saves the same name right after ours is first deleted."""

    raced = False

    def delete(self, name):
        super().delete(name)
        if not self.raced:
            self.raced = True
            self.save(name, ContentFile(b"someone else's file"))


def test_a_storage_that_renames_instead_of_overwriting_is_refused_and_its_copy_removed():
    storage = RacingStorage()
    rights_request, subject = _subject_with(10)
    name = f"{rights_request.reference}-zip.export"

    with pytest.raises(exports.ExportError, match="instead of"):
        _write(name, storage, rights_request, subject)

    assert storage.listdir("")[1] == [name]
    assert storage.open(name).read() == b"someone else's file"


# --- downloads: a file that cannot be sent does not use up the code or link --------------------------


def test_a_missing_file_is_a_404_and_the_code_still_works_once_the_file_is_back(
    client, ready_copy, committed
):
    rights_request, token = ready_copy
    export = DataExport.objects.get(request=rights_request)
    storage = exports.export_storage()
    with storage.open(export.file_name, "rb") as handle:
        stored = handle.read()
    code = ask_for_code(client, token, committed)
    storage.delete(export.file_name)

    response = download(client, token, code)

    assert response.status_code == 404
    assert "no longer available" in response.content.decode()
    assert nothing_was_used_up(rights_request)
    storage.save(export.file_name, ContentFile(stored))
    again = download(client, token, code)
    assert again.status_code == 200
    assert b"".join(again.streaming_content)
    assert ExportDownload.objects.filter(export=export, channel="code").count() == 1


def test_an_unreachable_storage_is_a_503_with_retry_after_and_the_code_still_works(
    client, ready_copy, committed, unreachable, settings
):
    rights_request, token = ready_copy
    code = ask_for_code(client, token, committed)
    unreachable()

    response = download(client, token, code)

    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert "no-store" in response["Cache-Control"]
    assert "has not been used up" in response.content.decode()
    assert nothing_was_used_up(rights_request)
    settings.EXPORT_STORAGE = ""  # the storage is back
    assert download(client, token, code).status_code == 200


def test_a_damaged_file_is_a_404_and_does_not_use_up_the_code(client, ready_copy, committed):
    rights_request, token = ready_copy
    export = DataExport.objects.get(request=rights_request)
    storage = exports.export_storage()
    code = ask_for_code(client, token, committed)
    storage.delete(export.file_name)
    storage.save(export.file_name, ContentFile(exports.HEADER + b"\x00\x00\x00\x05broken"))

    response = download(client, token, code)

    assert response.status_code == 404
    assert nothing_was_used_up(rights_request)


def test_a_missing_transfer_file_is_a_404_and_the_link_still_works_once_it_is_back(client, ready_transfer):
    rights_request, path = ready_transfer
    export = DataExport.objects.get(request=rights_request)
    storage = exports.export_storage()
    with storage.open(export.file_name, "rb") as handle:
        stored = handle.read()
    storage.delete(export.file_name)

    response = client.post(path)

    assert response.status_code == 404
    assert "no longer available" in response.content.decode()
    assert nothing_was_used_up(rights_request)
    storage.save(export.file_name, ContentFile(stored))
    assert client.post(path).status_code == 200
    assert client.post(path).status_code == 404  # and then it is used up: one time only


def test_an_unreachable_storage_leaves_the_transfer_link_unused_with_a_503(
    client, ready_transfer, unreachable, settings
):
    rights_request, path = ready_transfer
    unreachable()

    response = client.post(path)

    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert nothing_was_used_up(rights_request)
    settings.EXPORT_STORAGE = ""
    assert client.post(path).status_code == 200


# --- deleting: purge and erasure go through the storage -----------------------------------------------


def test_purge_deletes_expired_stray_and_stale_partial_files_through_the_storage(in_memory, ready_copy):
    rights_request, _token = ready_copy
    live = DataExport.objects.get(request=rights_request)
    expired_request, _ = approved_request(RequestType.COPY)
    expired = DataExport.objects.create(
        request=expired_request,
        kind="zip",
        file_name=f"{expired_request.reference}-zip.export",
        size=1,
        sha256="0" * 64,
        records=1,
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    for name in (expired.file_name, "DSR-GONE00-zip.export"):
        in_memory.save(name, ContentFile(b"x"))
    with time_machine.travel(timezone.now() - timedelta(days=2)):
        in_memory.save(".DSR-OLD000-zip.export.partial", ContentFile(b"x"))  # a write that died
    in_memory.save(".DSR-BUSY00-zip.export.partial", ContentFile(b"x"))  # still being written
    in_memory.save("registrations-20260101T020000Z.backup", ContentFile(b"x"))  # not an export's name

    result = services.purge()

    assert (result.exports, result.stray_files) == (1, 2)
    assert sorted(in_memory.listdir("")[1]) == sorted(
        [live.file_name, ".DSR-BUSY00-zip.export.partial", "registrations-20260101T020000Z.backup"]
    )


class AgelessStorage(InMemoryStorage):
    """A real storage that cannot say when a file was modified, as some backends cannot."""

    def get_modified_time(self, name):
        raise NotImplementedError("this storage does not keep modification times")


def test_a_partial_file_of_unknown_age_is_left_alone(settings):
    settings.STORAGES = {**settings.STORAGES, "exports": {"BACKEND": f"{__name__}.AgelessStorage"}}
    settings.EXPORT_STORAGE = "exports"
    storage = exports.export_storage()
    storage.save(".DSR-AGE000-zip.export.partial", ContentFile(b"x"))

    assert services.purge().stray_files == 0
    assert storage.exists(".DSR-AGE000-zip.export.partial")
    storage.delete(".DSR-AGE000-zip.export.partial")


def test_erasing_a_request_deletes_its_export_file_through_the_storage(in_memory, ready_copy):
    rights_request, _token = ready_copy
    export = DataExport.objects.get(request=rights_request)
    assert in_memory.exists(export.file_name)

    services.tombstone_request(request_id=rights_request.pk)

    assert not in_memory.exists(export.file_name)
    export.refresh_from_db()
    assert export.purged_at is not None


def test_an_unreachable_storage_makes_dsr_purge_fail_with_one_line(unreachable):
    unreachable()

    with pytest.raises(CommandError) as refused:
        call_command("dsr_purge", verbosity=0)

    assert str(refused.value).startswith("Purge failed: ")
    assert "\n" not in str(refused.value)
