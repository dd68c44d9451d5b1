"""Export files: built streaming, encrypted at rest in frames, decrypted streaming on download.

A copy/review export is a ZIP (``README.txt``, ``data.json``, one CSV per provider); a transfer export is
the same ``data.json`` alone (schema: docs/dsr-export.schema.json). Neither exists in plain text on
disk: the ZIP is written through ``EncryptingWriter``, which cuts the byte stream into frames of at most
``FRAME_BYTES`` and stores each as a Fernet token, in the framing of registrations/backups.py. Memory
holds one frame and one batch of encoded records at a time, whatever the subject's record count.

Key: a dedicated key derived from each ``FERNET_KEYS`` entry by HKDF-SHA256 with the purpose label
``artemis.dsr.export.v1``, so an export key is never a field key, and rotating FERNET_KEYS rotates it
(the first derived key encrypts, every one decrypts; exports live days, not years).

File layout::

    header   b"ARTEMIS-DSR-EXPORT v1\\n"
    frames   "D" + the next bytes of the plain file (ZIP or JSON)
    frame    "M" + JSON {"size": plain bytes, "sha256": of the plain bytes}; must be last
"""

import base64
import contextlib
import hashlib
import io
import json
import re
import tempfile
import zipfile

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from artemis_portal import storage as shared_storage
from dsr_requests import export_encoding
from registrations.backups import BackupError, fernet_for, read_frames, write_frame

HEADER = b"ARTEMIS-DSR-EXPORT v1\n"
DATA_FRAME = b"D"
MANIFEST_FRAME = b"M"
FRAME_BYTES = 256 * 1024
FORMAT = "artemis-dsr-export"
# 2: every record about the subject (staff-only notes, identity checks, corrections, ...) and the
# top-level ``withheld`` list.
FORMAT_VERSION = 2
# ``<reference>-<kind>.export``, and what ``artemis_portal.storage.publish`` writes before it is whole.
EXPORT_FILE = re.compile(r"^[A-Za-z0-9-]+-(zip|json)\.export$")
PARTIAL_FILE = re.compile(r"^\.[A-Za-z0-9-]+-(zip|json)\.export(\.[a-z0-9_]+)?\.partial$")
# How often (in records) a long export reports progress, which moves the run's heartbeat.
PROGRESS_EVERY = 1000


class ExportError(Exception):
    """An export file cannot be read back (missing, corrupted, or not decryptable with current keys)."""


def export_fernet():
    """The MultiFernet of export keys, derived from FERNET_KEYS (first key encrypts)."""
    keys = []
    for key in settings.FERNET_KEYS:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"artemis.dsr.export.v1")
        keys.append(base64.urlsafe_b64encode(hkdf.derive(key.encode())))
    return fernet_for(keys)


class ExportMissing(ExportError):
    """The export's file is not in the storage (deleted, or a storage that lost it)."""


def export_storage():
    """Where export files live: ``EXPORT_STORAGE`` if set, else the local folder EXPORT_DIR.

    Built on each call (it is cheap) so that a changed setting, in tests or a shell, takes effect.
    """
    return shared_storage.configured_storage(
        setting="EXPORT_STORAGE",
        configured=settings.EXPORT_STORAGE,
        options=settings.EXPORT_STORAGE_OPTIONS,
        local_dir=settings.EXPORT_DIR,
    )


def is_export_file(name):
    """Whether a file name in the storage is ours: an export, or the temporary file of one being written.

    ``dsr_purge`` deletes only such names, so a storage shared with other files loses nothing else.
    """
    return bool(EXPORT_FILE.match(name) or PARTIAL_FILE.match(name))


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


# data.json is written to the stream in pieces of about this many bytes, not a write per batch (each
# write goes through zipfile's deflate and CRC and the encrypting writer).
WRITE_BYTES = 256 * 1024
# Deflate level of the ZIP's members. Level 1 rather than zlib's default 6 (issue 19, item 4, fourth
# round): on the benchmark's 31 MB of JSON and CSV it deflates 2.7 times as fast (55 against 146 ms for
# 20,000 records, a sixth of the worker's share of a parallel export) for an archive about 30 % larger
# (0.9 against 0.7 MB); the files inside are the same bytes.
ZIP_LEVEL = 1


def _count(counter, count, progress):
    """Add a batch's records to the count; report progress each time it passes a multiple of
    ``PROGRESS_EVERY``."""
    before = counter["records"]
    counter["records"] = after = before + count
    if progress and after // PROGRESS_EVERY > before // PROGRESS_EVERY:
        progress(after)


def provider_batches(provider, subject, *, with_csv):
    """A provider's records for the export, encoded (``export_encoding.Batch``es, in order).

    A provider with an ``export_batches(subject, with_csv=...)`` method encodes its own (the rights
    requests: in helper processes when there are many, see ``export_parallel``); the records of any other
    provider's ``export`` are encoded here.
    """
    own = getattr(provider, "export_batches", None)
    if own is not None:
        return own(subject, with_csv=with_csv)
    encoder = export_encoding.RecordEncoder(
        provider.fields, nested=getattr(provider, "nested_fields", None), with_csv=with_csv
    )
    return encoder.batches(provider.export(subject))


def withheld_items(*, subject, providers):
    """What the providers leave out of the subject's export, and why: ``[{"provider", "title", "what",
    "reason"}]`` in provider order (the README's "What we did not include" and data.json's ``withheld``)."""
    return [
        {
            "provider": provider.key,
            "title": str(provider.title),
            "what": str(item.what),
            "reason": str(item.reason),
        }
        for provider in providers
        for item in provider.withheld(subject)
    ]


def write_data_json(stream, *, rights_request, subject, providers, counter, progress=None, csv_spools=None):
    """Write the export's ``data.json`` to a binary stream, a batch of records at a time.

    The shape is documented by docs/dsr-export.schema.json; ``counter["records"]`` counts what was written.
    After the providers' records comes ``withheld``: what they left out, and why. ``csv_spools`` (provider
    key -> ``CsvSpool``) also gets each batch's CSV rows, so the ZIP's CSVs come from the same single read.
    JSON text as ``export_encoding`` writes it (orjson: sorted keys, no whitespace).
    """
    dumps = export_encoding.dumps
    head = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "generated_at": timezone.now(),
        "request": {"reference": rights_request.reference, "type": rights_request.request_type},
    }
    pieces = [dumps(head)[:-1], b',"providers":[']
    size = 0
    for index, provider in enumerate(providers):
        meta = {
            "key": provider.key,
            "title": str(provider.title),
            "description": str(provider.description),
            "holds_personal_data": provider.holds_personal_data,
            "fields": list(provider.fields),
        }
        pieces.append((b"," if index else b"") + dumps(meta)[:-1] + b',"records":[')
        spool = (csv_spools or {}).get(provider.key)
        written = 0
        # closing: a failure here stops the provider's helper processes at once, not when collected.
        with contextlib.closing(provider_batches(provider, subject, with_csv=spool is not None)) as batches:
            for batch in batches:
                if not batch.count:
                    continue
                if written:
                    pieces.append(b",")
                pieces.append(batch.json)
                written += batch.count
                size += len(batch.json)
                if spool is not None:
                    spool.add(batch.csv)
                _count(counter, batch.count, progress)
                if size >= WRITE_BYTES:
                    stream.write(b"".join(pieces))
                    pieces, size = [], 0
        pieces.append(b"]}")
    withheld = [
        {key: item[key] for key in ("provider", "what", "reason")}
        for item in withheld_items(subject=subject, providers=providers)
    ]
    pieces.append(b'],"withheld":' + dumps(withheld) + b"}\n")
    stream.write(b"".join(pieces))


class CsvSpool:
    """One provider's CSV (UTF-8, header row; nested values as JSON), collected while data.json is
    written and copied into the ZIP after it, so each record is read from the database once.

    The CSV waits in an anonymous temporary file (gone when closed, or when the process dies), encrypted
    with AES-GCM under a key that exists only in this object: like the export itself, it is never plain
    text on disk. Memory holds one piece of about ``WRITE_BYTES`` bytes (or one batch, if larger).
    """

    def __init__(self, fields):
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close(), used across calls)
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._frames = 0
        self._pending = [export_encoding.csv_header(fields)]
        self._size = len(self._pending[0])

    def add(self, rows):
        """Append CSV rows (UTF-8 bytes, whole lines: an ``export_encoding.Batch``'s ``csv``)."""
        self._pending.append(rows)
        self._size += len(rows)
        if self._size >= WRITE_BYTES:
            self._flush()

    def _flush(self):
        plain = b"".join(self._pending)
        self._pending, self._size = [], 0
        if plain:
            nonce = self._frames.to_bytes(12, "big")
            sealed = self._aead.encrypt(nonce, plain, None)
            self._file.write(len(sealed).to_bytes(4, "big") + sealed)
            self._frames += 1

    def copy_to(self, stream):
        """Write the whole CSV to a binary stream (a ZIP member), then forget it."""
        self._flush()
        self._file.seek(0)
        for frame in range(self._frames):
            sealed = self._file.read(int.from_bytes(self._file.read(4), "big"))
            stream.write(self._aead.decrypt(frame.to_bytes(12, "big"), sealed, None))
        self.close()

    def close(self):
        self._file.close()


def readme_text(*, rights_request, providers, counts, activities, withheld=()):
    """The plain-language README of an export: per provider what it holds and how many records, what
    was left out and why (``withheld_items``), and the processing information from the register."""
    return render_to_string(
        "dsr_requests/export_readme.txt",
        {
            "reference": rights_request.reference,
            "generated_at": timezone.now(),
            "providers": [
                {"provider": provider, "count": counts.get(provider.key, 0)} for provider in providers
            ],
            "withheld": withheld,
            "activities": activities,
        },
    )


def write_export(file_name, *, kind, rights_request, subject, providers, activities, progress=None):
    """Build an export (encrypted) and publish it whole under ``file_name`` in the export storage.

    Returns ``(plain size, sha256, records)``. The file appears only once complete (see
    ``artemis_portal.storage.publish``) and replaces an earlier one of the same name, so a job killed
    halfway and run again leaves one file, never a half one, and no temporary file behind.
    """
    counter = {"records": 0}

    def write(out):
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
            _write_zip(
                writer,
                rights_request=rights_request,
                subject=subject,
                providers=providers,
                activities=activities,
                counter=counter,
                progress=progress,
            )
        writer.close()
        return writer

    storage = export_storage()
    # A worker killed while writing this export left its temporary file; the run resuming the job holds
    # the job's claim, so nothing else is writing it now.
    for name in shared_storage.list_files(storage):
        if name.startswith(f".{file_name}.") and shared_storage.is_partial(name):
            storage.delete(name)
    _size, writer = shared_storage.publish(storage, file_name, write, replace=True)
    return writer.size, writer.sha256, counter["records"]


def _write_zip(writer, *, rights_request, subject, providers, activities, counter, progress):
    counts = {provider.key: provider.find(subject) for provider in providers}
    spools = {provider.key: CsvSpool(provider.fields) for provider in providers if provider.fields}
    try:
        deflated = {"compression": zipfile.ZIP_DEFLATED, "compresslevel": ZIP_LEVEL}
        with zipfile.ZipFile(writer, "w", **deflated) as archive:
            archive.writestr(
                "README.txt",
                readme_text(
                    rights_request=rights_request,
                    providers=providers,
                    counts=counts,
                    activities=activities,
                    withheld=withheld_items(subject=subject, providers=providers),
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
                    csv_spools=spools,
                )
            for key, spool in spools.items():
                with archive.open(f"{key}.csv", "w", force_zip64=True) as member:
                    spool.copy_to(member)
    finally:
        for spool in spools.values():
            spool.close()


def open_export(file_name):
    """Open an export file for reading, now: ``ExportMissing`` if it is not there, a
    ``STORAGE_ERRORS`` exception if the storage cannot be reached.

    Eager on purpose: a download opens the file before it uses up the requester's code or link, so a
    file that cannot be read costs them nothing.
    """
    storage = export_storage()
    if not storage.exists(file_name):
        raise ExportMissing("the export file is missing")
    try:
        return storage.open(file_name, "rb")
    except FileNotFoundError:
        raise ExportMissing("the export file is missing") from None


def open_plain(file_name):
    """Open an export and decrypt its first frame now; returns a ``PlainStream`` of its plain bytes.

    For downloads: the code or link is used up only after this succeeds, so not only a missing file
    (``ExportMissing``) or an unreachable storage (``STORAGE_ERRORS``) but also a damaged file, or one no
    current key opens (``ExportError``), is found before anything is promised, rather than as a download
    cut short after the first bytes.
    """
    chunks = iter_plain(open_export(file_name))  # iter_plain closes the file when it raises or ends
    first = next(chunks, None)
    return PlainStream(first, chunks)


class PlainStream:
    """An export's plain bytes with the first chunk read ahead; ``close()`` closes the file even if the
    stream was never read (a streaming response calls it; so does a refusal after opening)."""

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
        """Close the export file now."""
        self._chunks.close()


def iter_plain(handle, *, chunk_bytes=64 * 1024):
    """Yield the plain bytes of an open export file (``open_export``), one frame at a time; checks the
    manifest, and closes the file at the end or when the consumer stops.

    Raises ``ExportError`` on a damaged file. A check that fails at the end (after bytes were sent)
    still raises, so the download is cut short rather than completed with bad data.
    """
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
