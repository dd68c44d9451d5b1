"""Export files: built streaming, encrypted at rest in frames, decrypted streaming on download.

A copy/review export is a ZIP (``README.txt``, ``data.json``, one CSV per provider); a transfer export is
the same ``data.json`` alone (schema: docs/dsr-export.schema.json). Neither exists in plain text on
disk: the ZIP is written through ``EncryptingWriter``, which cuts the byte stream into frames of at most
``FRAME_BYTES`` and stores each as a Fernet token, in the framing of registrations/backups.py. Memory
holds one frame and one provider record at a time, whatever the subject's record count.

Key: a dedicated key derived from each ``FERNET_KEYS`` entry by HKDF-SHA256 with the purpose label
``artemis.dsr.export.v1``, so an export key is never a field key, and rotating FERNET_KEYS rotates it
(the first derived key encrypts, every one decrypts; exports live days, not years).

Where: the storage ``export_storage()`` returns, ``EXPORT_STORAGE`` (e.g. S3, which web and worker dynos
share) or else the local folder ``EXPORT_DIR``. The worker writes, the web process reads, and a file is
published whole under its final name or not at all (see ``write_export``).

File layout::

    header   b"ARTEMIS-DSR-EXPORT v1\\n"
    frames   "D" + the next bytes of the plain file (ZIP or JSON)
    frame    "M" + JSON {"size": plain bytes, "sha256": of the plain bytes}; must be last
"""

import base64
import csv
import datetime as dt
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage
from django.template.loader import render_to_string
from django.utils import timezone

from artemis_portal.storage import STORAGE_ERRORS, configured_storage
from registrations.backups import BackupError, fernet_for, read_frames, write_frame

HEADER = b"ARTEMIS-DSR-EXPORT v1\n"
DATA_FRAME = b"D"
MANIFEST_FRAME = b"M"
FRAME_BYTES = 256 * 1024
FORMAT = "artemis-dsr-export"
FORMAT_VERSION = 1
# How often (in records) a long export reports progress, which moves the run's heartbeat.
PROGRESS_EVERY = 1000
# What an export file is called (``DSR-AB12CD-zip.export``), and what a local write in progress leaves if
# its process dies (``.DSR-AB12CD-zip.export.partial``). Purge touches no other file in the storage.
NAME_RE = re.compile(r"[A-Za-z0-9_-]+\.export")
PARTIAL_RE = re.compile(r"\.([A-Za-z0-9_-]+\.export)\.partial")


class ExportError(Exception):
    """An export file cannot be read back (missing, corrupted, or not decryptable with current keys)."""


def export_fernet():
    """The MultiFernet of export keys, derived from FERNET_KEYS (first key encrypts)."""
    keys = []
    for key in settings.FERNET_KEYS:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"artemis.dsr.export.v1")
        keys.append(base64.urlsafe_b64encode(hkdf.derive(key.encode())))
    return fernet_for(keys)


class ExportStorageUnavailable(Exception):
    """The export storage cannot be reached now (a bucket or disk error); trying later may work."""


# What opening an export for a download can raise besides a bug: the file is gone or damaged, or out of reach.
UNAVAILABLE = (ExportError, ExportStorageUnavailable)


def export_storage():
    """The storage export files live in: ``EXPORT_STORAGE`` if set, else a local folder at EXPORT_DIR.

    Built on each call, so a test's or an operator's setting applies at once; building one is cheap and
    does not touch the network.
    """
    return configured_storage("EXPORT_STORAGE", local_dir=settings.EXPORT_DIR)


class EncryptingWriter(io.RawIOBase):
    """A write-only, non-seekable file object that stores what is written as encrypted frames.

    ``zipfile`` accepts a non-seekable output (it writes data descriptors instead of seeking back), so
    the ZIP goes straight from ``zipfile`` into ciphertext. ``close()`` writes the manifest.
    """

    def __init__(self, out, fernet):
        super().__init__()
        self._out = out
        self._fernet = fernet
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        self.size = 0
        out.write(HEADER)

    def writable(self):
        return True

    def write(self, data):
        data = bytes(data)
        self._buffer += data
        self._digest.update(data)
        self.size += len(data)
        while len(self._buffer) >= FRAME_BYTES:
            self._flush_frame(FRAME_BYTES)
        return len(data)

    def _flush_frame(self, size):
        write_frame(self._out, self._fernet, DATA_FRAME, bytes(self._buffer[:size]))
        del self._buffer[:size]

    @property
    def sha256(self):
        return self._digest.hexdigest()

    def close(self):
        if not self.closed:
            if self._buffer:
                self._flush_frame(len(self._buffer))
            manifest = {"size": self.size, "sha256": self.sha256}
            write_frame(self._out, self._fernet, MANIFEST_FRAME, json.dumps(manifest).encode())
        super().close()


def _json_default(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _dumps(value):
    return json.dumps(value, default=_json_default, ensure_ascii=False, sort_keys=True)


def _counted(records, counter, progress):
    for record in records:
        counter["records"] += 1
        if progress and counter["records"] % PROGRESS_EVERY == 0:
            progress(counter["records"])
        yield record


def write_data_json(stream, *, rights_request, subject, providers, counter, progress=None):
    """Write the export's ``data.json`` to a binary stream, one record at a time.

    The shape is documented by docs/dsr-export.schema.json; ``counter["records"]`` counts what was written.
    """
    head = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "generated_at": timezone.now(),
        "request": {"reference": rights_request.reference, "type": rights_request.request_type},
    }
    stream.write(_dumps(head)[:-1].encode() + b', "providers": [')
    for index, provider in enumerate(providers):
        meta = {
            "key": provider.key,
            "title": str(provider.title),
            "description": str(provider.description),
            "holds_personal_data": provider.holds_personal_data,
            "fields": list(provider.fields),
        }
        stream.write((", " if index else "").encode() + _dumps(meta)[:-1].encode() + b', "records": [')
        for number, record in enumerate(_counted(provider.export(subject), counter, progress)):
            stream.write((", " if number else "").encode() + _dumps(record).encode())
        stream.write(b"]}")
    stream.write(b"]}\n")


def _csv_cell(value):
    if isinstance(value, list | dict):
        return _dumps(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return "" if value is None else value


def write_provider_csv(stream, *, provider, subject):
    """Write one provider's records as CSV (UTF-8, header row; nested values as JSON)."""
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(provider.fields)
    for record in provider.export(subject):
        writer.writerow([_csv_cell(record.get(name)) for name in provider.fields])
    text.detach()


def readme_text(*, rights_request, providers, counts, activities):
    """The plain-language README of an export, with the processing information from the register."""
    return render_to_string(
        "dsr_requests/export_readme.txt",
        {
            "reference": rights_request.reference,
            "generated_at": timezone.now(),
            "providers": [
                {"provider": provider, "count": counts.get(provider.key, 0)} for provider in providers
            ],
            "activities": activities,
        },
    )


def write_export(name, *, kind, rights_request, subject, providers, activities, progress=None, storage=None):
    """Build an export (encrypted) and publish it under ``name`` in the export storage, whole or not at all.

    Returns ``(plain size, sha256, records)``. The name is deterministic, so a rerun after a crash replaces
    the earlier file rather than adding one. In a local folder the file is written as
    ``.<name>.partial`` next to its final place and renamed when complete (atomic; a rerun overwrites the
    same partial name, and dsr_purge removes one left for a day). Elsewhere (S3) it is built in an unnamed
    temporary file on local disk, which vanishes with a killed process, and then uploaded in one save:
    memory holds one frame either way, whatever the record count.
    """
    storage = storage or export_storage()

    def build(out):
        return _write_encrypted(
            out,
            kind=kind,
            rights_request=rights_request,
            subject=subject,
            providers=providers,
            activities=activities,
            progress=progress,
        )

    if isinstance(storage, FileSystemStorage):
        return _publish_local(storage, name, build)
    with tempfile.TemporaryFile() as spool:
        result = build(spool)
        spool.seek(0)
        storage.delete(name)  # a storage that does not overwrite would otherwise pick another name
        saved = storage.save(name, File(spool, name=name))
    if saved != name:
        storage.delete(saved)
        raise ExportError(f"the export storage saved {saved!r} instead of {name!r}; try again")
    return result


def _publish_local(storage, name, build):
    """Write to ``.<name>.partial`` in the storage's folder, fsync, rename over ``name``, fsync the folder."""
    final = storage.path(name)
    folder = os.path.dirname(final)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    partial = os.path.join(folder, f".{name}.partial")
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        result = build(out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, final)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)
    return result


def _write_encrypted(out, *, kind, rights_request, subject, providers, activities, progress):
    """Write the whole export, encrypted, to the binary file ``out``; return ``(size, sha256, records)``."""
    counter = {"records": 0}
    writer = EncryptingWriter(out, export_fernet())
    if kind == "json":
        write_data_json(
            writer,
            rights_request=rights_request,
            subject=subject,
            providers=providers,
            counter=counter,
            progress=progress,
        )
    else:
        counts = {provider.key: provider.find(subject) for provider in providers}
        with zipfile.ZipFile(writer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(
                "README.txt",
                readme_text(
                    rights_request=rights_request,
                    providers=providers,
                    counts=counts,
                    activities=activities,
                ),
            )
            with archive.open("data.json", "w", force_zip64=True) as member:
                write_data_json(
                    member,
                    rights_request=rights_request,
                    subject=subject,
                    providers=providers,
                    counter=counter,
                    progress=progress,
                )
            for provider in providers:
                if provider.fields:
                    with archive.open(f"{provider.key}.csv", "w", force_zip64=True) as member:
                        write_provider_csv(member, provider=provider, subject=subject)
    writer.close()
    return writer.size, writer.sha256, counter["records"]


def iter_plain(name, *, storage=None, chunk_bytes=64 * 1024):
    """Yield the plain bytes of an export file, decrypting one frame at a time; checks the manifest.

    Raises ``ExportError`` on a missing or damaged file, and one of ``STORAGE_ERRORS`` when the storage
    cannot be reached. A check that fails at the end (after bytes were sent) still raises, so the download
    is cut short rather than completed with bad data.
    """
    storage = storage or export_storage()
    try:
        handle = storage.open(name, "rb")
    except FileNotFoundError:
        raise ExportError("the export file is missing") from None
    try:
        digest, size = hashlib.sha256(), 0
        for kind, payload in read_frames(
            handle, fernet=export_fernet(), header=HEADER, label="data export", keys_setting="FERNET_KEYS"
        ):
            if kind == DATA_FRAME:
                digest.update(payload)
                size += len(payload)
                for start in range(0, len(payload), chunk_bytes):
                    yield payload[start : start + chunk_bytes]
            elif kind == MANIFEST_FRAME:
                manifest = json.loads(payload)
                if manifest != {"size": size, "sha256": digest.hexdigest()} or handle.read(1):
                    raise ExportError("the export file does not match its manifest")
                return
            else:
                raise ExportError("unknown frame in the export file")
    except BackupError as exc:
        raise ExportError(str(exc)) from None
    finally:
        handle.close()


def open_plain(name, *, storage=None):
    """Open an export for streaming and decrypt its first frame now, before anything is promised.

    A download code or transfer link must not be used up for a file that cannot be sent, so the caller
    opens first: a missing or damaged file raises ``ExportError``, an unreachable storage raises
    ``ExportStorageUnavailable``, and either leaves the code alone. Returns an iterator of plain bytes
    (the first chunk included) whose ``close()`` closes the file, as a streaming response does.
    """
    chunks = iter_plain(name, storage=storage)
    try:
        first = next(chunks, None)
    except STORAGE_ERRORS as exc:
        raise ExportStorageUnavailable(type(exc).__name__) from None
    return _OpenedExport(first, chunks)


class _OpenedExport:
    """An iterator over an export's plain bytes whose first chunk was read ahead; ``close()`` closes it."""

    def __init__(self, first, chunks):
        self._first = first
        self._chunks = chunks

    def __iter__(self):
        return self

    def __next__(self):
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return next(self._chunks)

    def close(self):
        """Close the file now, even if iteration never started (a refused code, a dropped client)."""
        self._chunks.close()


def delete_export(name, *, storage=None):
    """Delete an export file from the storage; a file already gone is not an error."""
    (storage or export_storage()).delete(name)
