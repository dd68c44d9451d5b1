"""Export files in a storage other than the local folder: what main's download and purge tests leave open.

Real storages only: Django's InMemoryStorage as a non-local storage (written through the temporary-file
path, as S3 is), and a real S3Storage aimed at a loopback port where nothing listens (``unreachable_s3``).
"""

import contextlib
import hashlib
import io
import os
import re
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage
from django.core.management import CommandError, call_command
from django.utils import timezone

from dsr_requests import exports, providers, roles, services
from dsr_requests.models import DataExport, ExportDownload, RequestType, TransferTo
from dsr_requests.tests.conftest import ask_for_code, download, export_folder
from dsr_requests.tests.factories import StaffUserFactory, approved_request
from dsr_requests.tests.test_exports import _subject_with

pytestmark = pytest.mark.django_db


def use_storage(settings, backend):
    """EXPORT_STORAGE: a STORAGES alias for ``backend``; returns the storage exports will use."""
    settings.STORAGES = {**settings.STORAGES, "exports": {"BACKEND": backend}}
    settings.EXPORT_STORAGE = "exports"
    return exports.export_storage()


@pytest.fixture
def in_memory(settings):
    """Exports in Django's InMemoryStorage: not a local folder, so written through a temporary file."""
    return use_storage(settings, "django.core.files.storage.InMemoryStorage")


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


def nothing_was_used_up(rights_request):
    """No download logged, no code used, no link used, no "downloaded" entry on the timeline."""
    export = DataExport.objects.get(request=rights_request)
    return (
        not ExportDownload.objects.filter(export__request=rights_request).exists()
        and not export.codes.filter(used_at__isnull=False).exists()
        and export.link_used_at is None
        and not rights_request.events.filter(note__startswith="Your data was downloaded").exists()
    )


# --- writing: whole or nothing, one file per name ------------------------------------------------------


def _write(name, rights_request, subject, progress=None):
    return exports.write_export(
        name,
        kind="zip",
        rights_request=rights_request,
        subject=subject,
        providers=providers.all_providers(),
        activities=[],
        progress=progress,
    )


def _killed(count):
    raise KeyboardInterrupt  # what SIGTERM or a dying worker looks like to the code that is running


@pytest.mark.parametrize("where", ["local folder", "non-local storage"])
def test_a_write_killed_halfway_leaves_nothing_under_the_final_name_and_a_rerun_leaves_one_file(
    settings, where
):
    storage = exports.export_storage()
    if where == "non-local storage":
        storage = use_storage(settings, "django.core.files.storage.InMemoryStorage")
    rights_request, subject = _subject_with(1200)  # progress is reported at record 1000: killed there
    name = f"{rights_request.reference}-zip.export"

    with pytest.raises(KeyboardInterrupt):
        _write(name, rights_request, subject, progress=_killed)
    assert not storage.exists(name)
    _write(name, rights_request, subject)
    _size, _sha, records = _write(name, rights_request, subject)

    assert records == 1201
    assert storage.listdir("")[1] == [name]  # no partial, no second copy
    archive = zipfile.ZipFile(io.BytesIO(b"".join(exports.iter_plain(exports.open_export(name)))))
    assert "data.json" in archive.namelist()


def test_a_rewrite_killed_halfway_keeps_the_earlier_complete_file_in_a_non_local_storage(in_memory):
    rights_request, subject = _subject_with(1200)
    name = f"{rights_request.reference}-zip.export"
    _size, sha256, _records = _write(name, rights_request, subject)

    with pytest.raises(KeyboardInterrupt):
        _write(name, rights_request, subject, progress=_killed)

    plain = b"".join(exports.iter_plain(exports.open_export(name)))
    assert hashlib.sha256(plain).hexdigest() == sha256


class RacingStorage(InMemoryStorage):
    """An InMemoryStorage where another writer saves the same name right after ours is first deleted."""

    raced = False

    def delete(self, name):
        super().delete(name)
        if not self.raced:
            self.raced = True
            self.save(name, ContentFile(b"someone else's file"))


def test_a_storage_that_saves_under_another_name_is_refused_and_its_copy_removed(settings):
    storage = use_storage(settings, f"{__name__}.RacingStorage")
    rights_request, subject = _subject_with(10)
    name = f"{rights_request.reference}-zip.export"

    with pytest.raises(FileExistsError):
        _write(name, rights_request, subject)

    assert storage.listdir("")[1] == [name]
    assert storage.open(name).read() == b"someone else's file"


# --- downloads from a non-local storage ----------------------------------------------------------------


def test_a_transfer_is_written_to_a_non_local_storage_and_its_link_streams_it(
    client, in_memory, ready_transfer
):
    rights_request, path = ready_transfer
    export = DataExport.objects.get(request=rights_request, kind="json")

    assert in_memory.listdir("")[1] == [export.file_name]
    assert not Path(settings.EXPORT_DIR).exists()
    response = client.post(path)

    assert response.status_code == 200
    assert b'"providers"' in b"".join(response.streaming_content)


def test_an_unreachable_storage_leaves_the_transfer_link_unused_with_a_503(
    client, ready_transfer, unreachable_s3, settings
):
    rights_request, path = ready_transfer
    settings.EXPORT_STORAGE = "storages.backends.s3.S3Storage"
    settings.EXPORT_STORAGE_OPTIONS = unreachable_s3("artemis-exports")

    response = client.post(path)

    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert nothing_was_used_up(rights_request)
    settings.EXPORT_STORAGE = ""  # the storage is back
    assert client.post(path).status_code == 200
    assert client.post(path).status_code == 404  # and now it is used up: one time only


def test_a_damaged_file_is_found_before_the_code_is_used_up_and_the_code_works_once_it_is_whole(
    client, ready_copy, committed
):
    rights_request, token = ready_copy
    export = DataExport.objects.get(request=rights_request)
    storage = exports.export_storage()
    with storage.open(export.file_name, "rb") as handle:
        whole = handle.read()
    code = ask_for_code(client, token, committed)
    storage.delete(export.file_name)
    storage.save(export.file_name, ContentFile(whole[:60] + bytes([whole[60] ^ 1]) + whole[61:]))  # one bit

    response = download(client, token, code)

    assert response.status_code == 404
    assert "no longer available" in response.content.decode()
    assert nothing_was_used_up(rights_request)
    storage.delete(export.file_name)
    storage.save(export.file_name, ContentFile(whole))  # staff prepared it again
    again = download(client, token, code)
    assert again.status_code == 200
    assert zipfile.is_zipfile(io.BytesIO(b"".join(again.streaming_content)))


def test_an_opened_export_closes_its_file_even_when_it_is_never_read(ready_copy):
    rights_request, _token = ready_copy
    export = DataExport.objects.get(request=rights_request)

    path = str(export_folder() / export.file_name)

    def descriptors_open_on_the_file():  # this process's open files, as Linux lists them
        found = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # closed while listing
                found += os.readlink(f"/proc/self/fd/{fd}") == path
        return found

    stream = exports.open_plain(export.file_name)
    assert descriptors_open_on_the_file() == 1
    stream.close()
    assert descriptors_open_on_the_file() == 0


# --- deleting: purge and erasure go through the storage -----------------------------------------------


def test_purge_deletes_expired_stray_and_stale_partial_files_through_a_non_local_storage(
    in_memory, ready_copy
):
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
    in_memory.save(expired.file_name, ContentFile(b"x"))
    in_memory.save("DSR-NEW000-zip.export", ContentFile(b"x"))  # just published, its row not yet written
    with time_machine.travel(timezone.now() - timedelta(days=2)):
        in_memory.save("DSR-GONE00-zip.export", ContentFile(b"x"))  # no row: stray
        in_memory.save(".DSR-OLD000-zip.export.k2x9ab_1.partial", ContentFile(b"x"))  # a write that died
        in_memory.save("registrations-20260101T020000Z.backup", ContentFile(b"x"))  # not an export's name
    in_memory.save(".DSR-BUSY00-zip.export.q7rt0w_2.partial", ContentFile(b"x"))  # still being written

    result = services.purge()

    assert (result.exports, result.stray_files) == (1, 2)
    assert sorted(in_memory.listdir("")[1]) == sorted(
        [
            live.file_name,
            "DSR-NEW000-zip.export",
            ".DSR-BUSY00-zip.export.q7rt0w_2.partial",
            "registrations-20260101T020000Z.backup",
        ]
    )


class AgelessStorage(InMemoryStorage):
    """A real storage that cannot say when a file was modified, as some backends cannot."""

    def get_modified_time(self, name):
        raise NotImplementedError("this storage does not keep modification times")


def test_purge_leaves_files_of_unknown_age_alone(settings):
    storage = use_storage(settings, f"{__name__}.AgelessStorage")
    storage.save(".DSR-AGE000-zip.export.k2x9ab_1.partial", ContentFile(b"x"))
    storage.save("DSR-GONE00-zip.export", ContentFile(b"x"))

    assert services.purge().stray_files == 0  # when in doubt, keep: it may be a write in progress
    assert sorted(storage.listdir("")[1]) == [
        ".DSR-AGE000-zip.export.k2x9ab_1.partial",
        "DSR-GONE00-zip.export",
    ]


def test_erasing_a_request_deletes_its_export_file_through_the_storage(in_memory, ready_copy):
    rights_request, _token = ready_copy
    export = DataExport.objects.get(request=rights_request)
    assert in_memory.exists(export.file_name)

    services.tombstone_request(request_id=rights_request.pk)

    assert not in_memory.exists(export.file_name)
    export.refresh_from_db()
    assert export.purged_at is not None


def test_an_export_storage_that_names_nothing_makes_dsr_purge_fail_with_one_line_naming_it(settings):
    settings.EXPORT_STORAGE = "storages.backends.nowhere.Storage"

    with pytest.raises(CommandError) as refused:
        call_command("dsr_purge", verbosity=0)

    assert str(refused.value).startswith("Purge failed: EXPORT_STORAGE 'storages.backends.nowhere.Storage'")
    assert "\n" not in str(refused.value)
