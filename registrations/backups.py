"""Encrypted backups of Connect registrations: format, streaming writer and reader, retention, restore.

The privacy policy promises that backups hold registration data only, are encrypted, are taken daily and
are kept 7 days (daily), 8 weeks (weekly) and 12 months (monthly). A restore must bring tenants back able
to authenticate, so a backup carries each tenant's shared secret: decrypted from the field encryption
(``FERNET_KEYS``) and encrypted again with a key of its own (``BACKUP_KEYS``, never a field key), so one
leaked key list does not open both the database and every backup.

File format (version 1)
-----------------------
A backup is a header followed by frames::

    header   b"ARTEMIS-REGISTRATIONS-BACKUP v1\\n"
    frame    4-byte big-endian length N, then N bytes: one Fernet token in raw (base64-decoded) form
    ...
    frame    the manifest frame, which must be the last bytes of the file

Each token's plain text starts with one byte naming the frame: ``D`` (data) is followed by a zlib-compressed
run of JSON lines, one registration per line; ``F`` (after the data frames) the same for Forge
installations (``forge_backups``); ``M`` (manifest) is followed by a JSON object: format and
schema version, creation time, row count, field names and the SHA-256 of the uncompressed JSON lines.

Why this shape: a single Fernet token over the whole archive would hold every tenant in memory, so rows are
encrypted in chunks of a bounded size and memory does not grow with the tenant count. Every byte after the
header is covered by a Fernet HMAC (tokens are stored raw, so there is no lenient base64 to absorb a flipped
bit), the frame kind is inside the encrypted part, and the manifest's checksum catches dropped, repeated or
reordered chunks. A file that ends before its manifest is truncated; bytes after it are refused too.

Backups are written under a temporary name and published only when complete, and their names carry the
UTC time they were taken (``registrations-20261128T020000Z.backup``), which the retention rule reads.
"""

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterator

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation, ValidationError
from django.core.files.storage import Storage
from django.db import DatabaseError, transaction
from django.utils import timezone

from artemis_portal import storage as shared_storage
from registrations import erasure_ledger, forge_backups, tenant_cache
from registrations.models import Registration

logger = logging.getLogger(__name__)

HEADER = b"ARTEMIS-REGISTRATIONS-BACKUP v1\n"
FORMAT_VERSION = 1
# The row encoding: JSON lines of the model's concrete fields (not the primary key), datetimes in ISO 8601.
SCHEMA_VERSION = 1
DATA_FRAME = b"D"
FORGE_FRAME = b"F"
MANIFEST_FRAME = b"M"
LENGTH = struct.Struct(">I")
# A frame is one batch of rows; anything larger than this is a corrupted length, not a real frame.
MAX_FRAME_BYTES = 64 * 1024 * 1024
BATCH_SIZE = 1000

NAME_PREFIX = "registrations-"
NAME_SUFFIX = ".backup"
NAME_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_RE = re.compile(r"registrations-([0-9]{8}T[0-9]{6}Z)\.backup")
# What a crashed backup leaves behind in a local folder: ".<final name>.<random>.partial".
PARTIAL_RE = re.compile(r"\.(registrations-[0-9]{8}T[0-9]{6}Z\.backup)\.[A-Za-z0-9_]+\.partial")
# A partial file older than this belongs to a backup that died; a younger one may still be growing.
STALE_PARTIAL_AGE = dt.timedelta(days=1)

KEEP_DAILY = 7
KEEP_WEEKLY = 8
KEEP_MONTHLY = 12


class BackupError(Exception):
    """A backup cannot be written, read or restored; the message is one line, fit for an operator."""


# --- Names -------------------------------------------------------------------------------------------


def backup_name(taken_at):
    """Return the file name of a backup taken at ``taken_at`` (aware), in UTC to the second."""
    return NAME_PREFIX + taken_at.astimezone(dt.UTC).strftime(NAME_TIME_FORMAT) + NAME_SUFFIX


def parse_backup_name(name):
    """Return the UTC time a backup was taken, read from its name, or None if it is not a backup's name."""
    match = NAME_RE.fullmatch(name)
    if not match:
        return None
    try:
        return dt.datetime.strptime(match.group(1), NAME_TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:  # the right shape, an impossible date (month 13)
        return None


# --- Rows ----------------------------------------------------------------------------------------------


def backup_fields():
    """The Registration fields a backup holds: every concrete field except the primary key.

    The primary key is left out because a restore matches tenants by ``client_key``; new rows get fresh ids.
    """
    return [f for f in Registration._meta.concrete_fields if not f.primary_key]


def _json_default(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _encode_rows(rows):
    return b"".join(
        json.dumps(row, default=_json_default, separators=(",", ":"), sort_keys=True).encode() + b"\n"
        for row in rows
    )


# --- Writer --------------------------------------------------------------------------------------------


def fernet_for(keys):
    """Return a MultiFernet for a key list: the first key encrypts, every key decrypts."""
    return MultiFernet([Fernet(key) for key in keys])


def write_frame(out, fernet, kind, payload):
    """Write one frame: the length, then the raw Fernet token of ``kind + payload``.

    Shared with the rights-request exports (dsr_requests/exports.py), which store ZIPs in this framing.
    """
    raw = base64.urlsafe_b64decode(fernet.encrypt(kind + payload))
    out.write(LENGTH.pack(len(raw)))
    out.write(raw)


def read_frames(fileobj, *, fernet, header, label="registration backup", keys_setting="BACKUP_KEYS"):
    """Check ``header``, then yield ``(kind, payload)`` per frame; ``BackupError`` on any defect.

    Reads one frame at a time, so memory holds one frame whatever the file's size. The caller decides
    when the frames should end (a manifest frame) and reports a file that ends earlier as truncated.
    """
    found = fileobj.read(len(header))
    if not found:
        raise BackupError(f"empty file: not a {label}")
    if found != header:
        raise BackupError(f"not a {label} (unknown header), or its header is corrupted")
    index = 0
    while True:
        prefix = fileobj.read(LENGTH.size)
        if not prefix:
            raise BackupError("truncated: the file ends before its manifest")
        if len(prefix) != LENGTH.size:
            raise BackupError(f"truncated: the file ends inside frame {index + 1}")
        (size,) = LENGTH.unpack(prefix)
        if not 0 < size <= MAX_FRAME_BYTES:
            raise BackupError(f"corrupted: frame {index + 1} has an impossible length")
        raw = fileobj.read(size)
        if len(raw) != size:
            raise BackupError(f"truncated: the file ends inside frame {index + 1}, before its manifest")
        try:
            plain = fernet.decrypt(base64.urlsafe_b64encode(raw))
        except InvalidToken:
            if index == 0:
                raise BackupError(
                    f"cannot be decrypted with any key in {keys_setting}: wrong key, or the file is corrupted"
                ) from None
            raise BackupError(f"corrupted: frame {index + 1} fails its integrity check") from None
        index += 1
        yield plain[:1], plain[1:]


def write_archive(out, batches, *, fernet, created_at, fields, forge_batches=()):
    """Write the header, one data frame per batch of rows, and the manifest to ``out``; return the manifest.

    ``batches`` is an iterable of lists of row dicts, consumed one at a time, so memory holds one batch;
    ``forge_batches`` the same for Forge installations, written as ``F`` frames after them.
    """
    out.write(HEADER)
    digest = hashlib.sha256()
    row_count = 0
    for rows in batches:
        if not rows:
            continue
        content = _encode_rows(rows)
        digest.update(content)
        row_count += len(rows)
        write_frame(out, fernet, DATA_FRAME, zlib.compress(content, 6))
    forge_digest, forge_count = hashlib.sha256(), 0
    for rows in forge_batches:
        content = _encode_rows(rows)
        forge_digest.update(content)
        forge_count += len(rows)
        write_frame(out, fernet, FORGE_FRAME, zlib.compress(content, 6))
    manifest = {
        "format": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "model": Registration._meta.label,
        "created_at": created_at.astimezone(dt.UTC).isoformat(),
        "row_count": row_count,
        "fields": fields,
        "sha256": digest.hexdigest(),
        "forge_row_count": forge_count,
        "forge_sha256": forge_digest.hexdigest(),
    }
    write_frame(out, fernet, MANIFEST_FRAME, json.dumps(manifest, sort_keys=True).encode())
    return manifest


# --- Reader --------------------------------------------------------------------------------------------


class BackupReader:
    """Read a backup frame by frame, yielding batches of rows, and check it whole before saying it is.

    Consumers must exhaust ``batches()``: only at its end are the manifest, row count and checksum checked
    (and ``manifest`` set). Any defect raises ``BackupError`` with a one-line reason.
    """

    def __init__(self, fileobj, *, fernet, on_forge_rows=None):
        self.fileobj = fileobj
        self.fernet = fernet
        self.manifest = None
        # Called with each batch of Forge installation rows (a restore applies them); None: only checked.
        self.on_forge_rows = on_forge_rows

    def _frames(self):
        return read_frames(self.fileobj, fernet=self.fernet, header=HEADER)

    def batches(self):
        """Yield lists of row dicts; raise ``BackupError`` as soon as anything is wrong."""
        digest = hashlib.sha256()
        row_count = 0
        forge = {"digest": hashlib.sha256(), "count": 0}
        for kind, payload in self._frames():
            if kind == FORGE_FRAME:
                self._forge_frame(payload, forge)
            elif kind == DATA_FRAME:
                try:
                    content = zlib.decompress(payload)
                    rows = [json.loads(line) for line in content.splitlines()]
                except (zlib.error, ValueError):
                    raise BackupError("corrupted: a data frame does not hold JSON rows") from None
                digest.update(content)
                row_count += len(rows)
                yield rows
            elif kind == MANIFEST_FRAME:
                manifest = self._check_manifest(payload, digest.hexdigest(), row_count)
                self._check_forge(manifest, forge)
                if self.fileobj.read(1):
                    raise BackupError("corrupted: unexpected data after the manifest")
                self.manifest = manifest
                return
            else:
                raise BackupError("corrupted: unknown frame kind")

    def _forge_frame(self, payload, forge):
        try:
            content = zlib.decompress(payload)
            rows = [json.loads(line) for line in content.splitlines()]
        except (zlib.error, ValueError):
            raise BackupError("corrupted: a Forge frame does not hold JSON rows") from None
        if any(not isinstance(row, dict) or set(row) - forge_backups.known_fields() for row in rows):
            raise BackupError("the backup has Forge installation fields this model lacks")
        forge["digest"].update(content)
        forge["count"] += len(rows)
        if self.on_forge_rows is not None:
            self.on_forge_rows(rows)

    @staticmethod
    def _check_forge(manifest, forge):
        """Backups from before Forge have no Forge rows and no Forge fields in the manifest."""
        declared = manifest.get("forge_row_count", 0)
        if declared != forge["count"]:
            raise BackupError(
                f"corrupted: the manifest says {declared} Forge rows, the file holds {forge['count']}"
            )
        sha = str(manifest.get("forge_sha256", hashlib.sha256().hexdigest()))
        if not hmac.compare_digest(sha, forge["digest"].hexdigest()):
            raise BackupError("corrupted: the Forge rows do not match the manifest's SHA-256")

    @staticmethod
    def _check_manifest(payload, sha256, row_count):
        try:
            manifest = json.loads(payload)
            declared = (manifest["format"], manifest["schema_version"], manifest["row_count"])
            declared_sha = str(manifest["sha256"])
            fields = manifest["fields"]
        except (ValueError, KeyError, TypeError):
            raise BackupError("corrupted: the manifest is not readable") from None
        if declared[:2] != (FORMAT_VERSION, SCHEMA_VERSION):
            raise BackupError(
                f"unsupported backup format {declared[0]}/schema {declared[1]} "
                f"(this version reads {FORMAT_VERSION}/{SCHEMA_VERSION})"
            )
        if declared[2] != row_count:
            raise BackupError(f"corrupted: the manifest says {declared[2]} rows, the file holds {row_count}")
        if not hmac.compare_digest(declared_sha, sha256):
            raise BackupError("corrupted: the content does not match the manifest's SHA-256")
        unknown = set(fields) - {f.name for f in backup_fields()}
        if unknown:
            raise BackupError(f"the backup has fields this model lacks: {', '.join(sorted(unknown))}")
        return manifest


def read_manifest(fileobj, *, fernet):
    """Read a whole backup, checking every frame, and return its manifest."""
    reader = BackupReader(fileobj, fernet=fernet)
    for _ in reader.batches():
        pass
    return reader.manifest


# --- Retention -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RetentionPlan:
    """What pruning would do: names kept (with why), names deleted, and names it does not recognise."""

    keep: dict[str, list[str]]
    delete: list[str]
    ignored: list[str]


def _month_index(day):
    return day.year * 12 + day.month - 1


def plan_retention(names, *, now):
    """Decide which backups to keep: the newest of each of the last 7 days, 8 ISO weeks and 12 months.

    A pure function of the file names and ``now`` (UTC calendar periods, counted back from ``now``'s
    day, week and month, the current one included). Periods are calendar periods, not "the last N days
    that have a backup", so nothing older than 12 months is ever kept, even when backups stopped for a
    while: the policy's limit is a promise. Names with a future time are kept (a clock may be skewed);
    other files are ignored, never deleted, except partial files of a backup that died more than a day ago.
    """
    now = now.astimezone(dt.UTC)
    today = now.date()
    week_start = today - dt.timedelta(days=today.weekday())
    periods = (
        ("daily", lambda d: d >= today - dt.timedelta(days=KEEP_DAILY - 1), lambda d: d.isoformat()),
        (
            "weekly",
            lambda d: d >= week_start - dt.timedelta(weeks=KEEP_WEEKLY - 1),
            lambda d: "{}-W{:02d}".format(*d.isocalendar()[:2]),
        ),
        ("monthly", lambda d: _month_index(d) > _month_index(today) - KEEP_MONTHLY, lambda d: f"{d:%Y-%m}"),
    )
    dated, ignored, delete = [], [], []
    for name in names:
        taken_at = parse_backup_name(name)
        if taken_at is not None:
            dated.append((taken_at, name))
            continue
        partial = PARTIAL_RE.fullmatch(name)
        partial_time = parse_backup_name(partial.group(1)) if partial else None
        if partial_time is not None and partial_time < now - STALE_PARTIAL_AGE:
            delete.append(name)
        else:
            ignored.append(name)

    keep = {}
    past = []
    for taken_at, name in sorted(dated):
        if taken_at > now:
            keep[name] = ["taken in the future (clock skew?)"]
        else:
            past.append((taken_at, name))
    for kind, within, label in periods:
        newest_in = {}
        for taken_at, name in past:  # oldest first, so the newest in each period wins
            if within(taken_at.date()):
                newest_in[label(taken_at.date())] = name
        for period, name in newest_in.items():
            keep.setdefault(name, []).append(f"{kind} {period}")
    delete.extend(name for _, name in sorted(dated) if name not in keep)
    return RetentionPlan(keep=keep, delete=sorted(delete), ignored=sorted(ignored))


# --- Storage -------------------------------------------------------------------------------------------


# Commands catch these next to BackupError, so an unreachable bucket is one line, not a traceback.
STORAGE_ERRORS = shared_storage.STORAGE_ERRORS
describe_storage = shared_storage.describe


def backup_storage():
    """Return the storage backups live in: ``BACKUP_STORAGE`` if set, else a local folder at BACKUP_DIR."""
    try:
        return shared_storage.configured_storage(
            setting="BACKUP_STORAGE",
            configured=settings.BACKUP_STORAGE,
            options=settings.BACKUP_STORAGE_OPTIONS,
            local_dir=settings.BACKUP_DIR,
        )
    except shared_storage.StorageConfigError as exc:
        raise BackupError(str(exc)) from None


def list_backups(storage):
    """Return the names of the backups in ``storage``, oldest first (the names sort by time)."""
    return sorted(name for name in shared_storage.list_files(storage) if parse_backup_name(name))


# --- Operations ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BackupResult:
    """A backup that was written and published."""

    name: str
    location: str
    row_count: int
    size: int
    sha256: str


def _batched(iterable, size):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _row_batches(field_names, batch_size, progress, total):
    # One query, streamed: a server-side cursor on PostgreSQL (one consistent snapshot), fetchmany on SQLite.
    rows = Registration.objects.order_by("pk").values(*field_names).iterator(chunk_size=batch_size)
    done = 0
    for batch in _batched(rows, batch_size):
        yield batch
        done += len(batch)
        if progress:
            progress(done, total)


def create_backup(
    *,
    actor: str,
    storage: Storage | None = None,
    now: dt.datetime | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> BackupResult:
    """Write an encrypted backup of every registration and publish it under its timestamped name.

    The archive is written to a temporary file first and appears under its real name only once complete
    (a rename in a local folder, one upload for other storages), so a crash never leaves a half backup
    that looks whole. ``progress(done, total)`` is called after each batch.
    """
    storage = storage or backup_storage()
    now = now or timezone.now()
    name = backup_name(now)
    if storage.exists(name):
        raise BackupError(f"a backup named {name} exists already; try again in a second")
    fields = [f.name for f in backup_fields()]
    fernet = fernet_for(settings.BACKUP_KEYS)
    total = Registration.objects.count()
    batches = _row_batches(fields, batch_size, progress, total)
    forge_batches = forge_backups.row_batches(batch_size)

    try:
        size, manifest = shared_storage.publish(
            storage,
            name,
            lambda out: write_archive(
                out, batches, fernet=fernet, created_at=now, fields=fields, forge_batches=forge_batches
            ),
            replace=False,
        )
    except FileExistsError:
        raise BackupError(f"a backup named {name} appeared while writing; try again") from None
    logger.info("backup %s written by %s: %d registrations", name, actor, manifest["row_count"])
    return BackupResult(
        name=name,
        location=describe_storage(storage),
        row_count=manifest["row_count"],
        size=size,
        sha256=manifest["sha256"],
    )


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking one backup: its manifest if it is sound, else the reason it is not."""

    name: str
    manifest: dict | None = None
    error: str | None = None

    @property
    def ok(self):
        """True when the backup decrypted whole and matched its manifest."""
        return self.error is None


def verify_backups(*, storage: Storage | None = None) -> Iterator[VerifyResult]:
    """Decrypt and check every backup in the storage, oldest first, yielding one result per backup."""
    storage = storage or backup_storage()
    fernet = fernet_for(settings.BACKUP_KEYS)
    for name in list_backups(storage):
        try:
            with storage.open(name, "rb") as fileobj:
                manifest = read_manifest(fileobj, fernet=fernet)
        except BackupError as exc:
            yield VerifyResult(name=name, error=str(exc))
        except STORAGE_ERRORS as exc:
            yield VerifyResult(name=name, error=f"cannot be read: {getattr(exc, 'strerror', None) or exc}")
        else:
            yield VerifyResult(name=name, manifest=manifest)


def prune_backups(*, actor: str, dry_run: bool, storage: Storage | None = None, now=None) -> RetentionPlan:
    """Apply the retention rule to the storage's backups; with ``dry_run`` only say what would go."""
    storage = storage or backup_storage()
    plan = plan_retention(shared_storage.list_files(storage), now=now or timezone.now())
    if not dry_run:
        for name in plan.delete:
            storage.delete(name)
            logger.info("backup %s pruned by %s", name, actor)
    return plan


@dataclasses.dataclass
class RestoreSummary:
    """What a restore did (or, in a dry run, would do): tenants counted per outcome, a few named.

    Only the first ``EXAMPLES`` client keys of each outcome are kept, so a restore of many tenants does
    not hold them all in memory just to report them.
    """

    EXAMPLES = 20
    OUTCOMES = ("new", "updated", "unchanged", "newer_in_database")

    manifest: dict | None = None
    counts: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(RestoreSummary.OUTCOMES, 0))
    examples: dict = dataclasses.field(default_factory=lambda: {o: [] for o in RestoreSummary.OUTCOMES})
    # The erasure ledger, re-applied: records erased again (never named: they were erased), pending
    # sites' records kept while the app is installed, erased sites installed again since, and entries
    # hashed under a key no longer configured (they cannot be matched).
    erased_again: int = 0
    kept_pending: int = 0
    reinstalled_since: int = 0
    ledger_other_key: int = 0
    # Forge installations restored, per outcome (forge_backups.OUTCOMES).
    forge_counts: dict = dataclasses.field(default_factory=dict)

    def add(self, outcome, client_key):
        """Count one tenant under ``outcome``."""
        self.counts[outcome] += 1
        if len(self.examples[outcome]) < self.EXAMPLES:
            self.examples[outcome].append(client_key)


def open_backup(path):
    """Open a backup for reading: a local file path, or else the name of a backup in the backup storage."""
    if os.path.isfile(path):
        try:
            return open(path, "rb")  # noqa: SIM115 (the caller closes it)
        except OSError as exc:
            raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    storage = backup_storage()
    try:
        if parse_backup_name(os.path.basename(path)) and storage.exists(path):
            return storage.open(path, "rb")
    except SuspiciousFileOperation:
        pass
    raise BackupError(f"no backup at {path}: neither a file nor a backup in {describe_storage(storage)}")


def restore_backup(
    path, *, actor: str, dry_run: bool, progress: Callable[[int, int], None] | None = None
) -> RestoreSummary:
    """Verify a backup whole, then restore it in one transaction, matching tenants by client key.

    Tenants missing from the database are created; tenants whose row differs are updated, unless the
    database's row was updated after the backup's copy (a tenant that reinstalled since, with a new
    secret, must not get its old secret back): those are left alone and reported. Tenants the backup
    does not hold are left alone. In the same transaction the erasure ledger is re-applied to every
    tenant the backup holds: a site a rights request erased is not brought back (and its record is
    deleted if the database still had it), see ``erasure_ledger.plan_reapply``. If anything fails,
    nothing changes. The file is read twice (check, then apply) so memory holds one batch, never the
    whole backup.
    """
    fernet = fernet_for(settings.BACKUP_KEYS)
    with open_backup(path) as fileobj:
        total = read_manifest(fileobj, fernet=fernet)["row_count"]  # refuse a bad file before any write
    summary = RestoreSummary()
    done = 0
    try:
        with transaction.atomic(), open_backup(path) as fileobj:
            reader = BackupReader(
                fileobj,
                fernet=fernet,
                on_forge_rows=lambda rows: forge_backups.restore_rows(
                    rows, summary.forge_counts, dry_run=dry_run
                ),
            )
            for rows in reader.batches():
                _restore_batch(rows, summary, dry_run=dry_run)
                done += len(rows)
                if progress:
                    progress(done, total)
            summary.manifest = reader.manifest
            summary.ledger_other_key = erasure_ledger.entries_under_another_key()
    except (ValidationError, DatabaseError) as exc:
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
        raise BackupError(f"restore failed, nothing was changed: {message}") from None
    if not dry_run:
        logger.info(
            "restore of %s by %s: %s, %d erased again by the erasure ledger",
            os.path.basename(path),
            actor,
            ", ".join(f"{count} {outcome}" for outcome, count in summary.counts.items()),
            summary.erased_again,
        )
    return summary


def _restore_batch(rows, summary, *, dry_run):
    """Apply one batch of backed-up rows, re-apply the erasure ledger to it, and forget changed tenants."""
    fields_by_name = {f.name: f for f in backup_fields()}
    decoded = [{name: fields_by_name[name].to_python(value) for name, value in row.items()} for row in rows]
    existing = Registration.objects.in_bulk([row["client_key"] for row in decoded], field_name="client_key")
    sorted_rows = []  # (outcome, backed-up row, row in the database or None, differing fields)
    for row in decoded:
        current = existing.get(row["client_key"])
        if current is None:
            sorted_rows.append(("new", row, None, set()))
            continue
        differing = {name for name, value in row.items() if not _same(name, getattr(current, name), value)}
        if not differing:
            sorted_rows.append(("unchanged", row, current, differing))
        elif current.updated_at > row["updated_at"]:
            sorted_rows.append(("newer_in_database", row, current, differing))
        else:
            sorted_rows.append(("updated", row, current, differing))
    # The ledger judges each tenant as it would stand after this batch: the backup's copy where it is
    # applied, the database's where it is kept.
    plan = erasure_ledger.plan_reapply(
        [
            erasure_ledger.RestoredRow(
                row["client_key"],
                *(
                    (row["state"], row["installed_at"])
                    if outcome in ("new", "updated")
                    else (current.state, current.installed_at)
                ),
            )
            for outcome, row, current, _differing in sorted_rows
        ]
    )
    summary.erased_again += len(plan.erase)
    summary.kept_pending += plan.kept_pending
    summary.reinstalled_since += plan.reinstalled_since
    to_create, to_update, changed_fields = [], [], set()
    for outcome, row, current, differing in sorted_rows:
        if row["client_key"] in plan.erase:
            continue  # not restored, and deleted below if the database has it
        summary.add(outcome, row["client_key"])
        if outcome == "new":
            to_create.append(Registration(**row))
        elif outcome == "updated":
            for name in differing:
                setattr(current, name, row[name])
            to_update.append(current)
            changed_fields |= differing
    if dry_run:
        return
    Registration.objects.bulk_create(to_create, batch_size=BATCH_SIZE)
    if to_update:
        Registration.objects.bulk_update(to_update, sorted(changed_fields), batch_size=BATCH_SIZE)
    erasure_ledger.apply_plan(plan)
    # Once committed, a cached record (or a cached "unknown tenant" from before the restore) is stale.
    # Holding these keys until the commit is the one part of a restore's memory that grows with it.
    changed = [r.client_key for r in to_create + to_update]
    transaction.on_commit(lambda: _forget(changed))


def _same(field_name, current, restored):
    if field_name == "shared_secret":  # a secret is compared in constant time, even here
        return hmac.compare_digest(current.encode(), restored.encode())
    return current == restored


def _forget(client_keys):
    for client_key in client_keys:
        tenant_cache.forget(client_key)


def progress_printer(write, verb):
    """Return a ``progress(done, total)`` callback that writes one line at each tenth of the way."""
    reached = {"tenth": 0}

    def report(done, total):
        tenth = min(10, 10 * done // max(total, 1))
        if tenth > reached["tenth"]:
            reached["tenth"] = tenth
            write(f"{verb} {done:,} of {total:,} registrations ({tenth * 10}%)")

    return report
