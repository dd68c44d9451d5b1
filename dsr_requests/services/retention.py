"""Retention: tombstoning a finished request (personal data and export files dropped, the row kept), the
retention purge (``dsr_purge``) and re-indexing email hashes after a key change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from artemis_portal import storage as shared_storage
from dsr_requests import tokens
from dsr_requests.models import (
    FulfilmentRun,
    IdentityDocument,
    RightsRequest,
)
from dsr_requests.services._base import _lock, logger
from dsr_requests.services.identity import _drop_proof_material
from dsr_requests.states import FINAL_STATES

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from django.core.files.storage import Storage
    from django.db.models import QuerySet

    from dsr_requests.models import DataExport
    from dsr_requests.states import Actor


def tombstone_request(*, request_id: int) -> RightsRequest:
    """Erase a request's personal data, keeping reference, type, dates, outcome and the email hash."""
    with transaction.atomic():
        locked = _lock(request_id)
        _tombstone(locked)
        return locked


def _tombstone(locked: RightsRequest) -> None:
    """Blank every personal field of a locked request and what hangs off it; delete its export files.

    The blind-index hash stays, so a later request from the same address can be told its data was
    erased; free text that staff or the requester wrote (notes, reasons, answers) is removed, since it
    may name the person.
    """
    from dsr_requests import exports

    erased_text = str(_("(erased)"))
    for name in RightsRequest.TOMBSTONE_FIELDS:
        setattr(locked, name, "")
    if locked.rejection_reason:
        locked.rejection_reason = erased_text
    if locked.extension_reason:
        locked.extension_reason = erased_text
    locked.erased_at = timezone.now()
    locked.save()
    _drop_proof_material(locked)
    locked.account_codes.all().delete()
    locked.questions.all().delete()
    locked.rectifications.all().delete()
    locked.events.update(note="")
    locked.identity_checks.update(note="")
    FulfilmentRun.objects.filter(request=locked).update(last_error="")
    locked.emails.update(to="", body_text="", body_html="")
    live = locked.exports.filter(purged_at=None)
    if live.exists():  # a purged export's file and codes are gone already
        _drop_export_files(live, storage=exports.export_storage())
    live.update(purged_at=timezone.now(), link_token_hash=None)


def _drop_export_files(queryset: QuerySet[DataExport], *, storage: Storage) -> None:
    """Delete the files and the download codes of the exports in ``queryset``: one storage for all of
    them (building an S3 client per file would cost more than the deletes), one query for the codes."""
    from dsr_requests.models import DownloadCode

    for file_name in queryset.values_list("file_name", flat=True):
        storage.delete(file_name)
    DownloadCode.objects.filter(export__in=queryset).delete()


@dataclass
class PurgeResult:
    """What a purge removed (or, in a dry run, would remove)."""

    exports: int = 0
    documents: int = 0
    stray_files: int = 0
    requests: int = 0


def _older_than(storage: Storage, name: str, cutoff: datetime) -> bool:
    """Whether a file was last written before ``cutoff``; a file whose age the storage cannot tell is
    kept (not stray): when in doubt, keep."""
    try:
        return storage.get_modified_time(name) < cutoff
    except NotImplementedError:
        return False


def purge(
    *, dry_run: bool = False, now: datetime | None = None, progress: Callable[[str], object] | None = None
) -> PurgeResult:
    """Remove expired exports, leftover identity documents, stray export files, and old personal data.

    Personal data of requests closed more than DSR_RETENTION_MONTHS ago is erased to a tombstone. With
    ``dry_run`` nothing changes and the counts say what would. ``progress(message)`` reports each stage.
    """
    from dsr_requests import exports
    from dsr_requests.models import DataExport

    now = now or timezone.now()
    progress = progress or (lambda message: None)
    result = PurgeResult()

    storage = exports.export_storage()
    expired = DataExport.objects.filter(purged_at=None, expires_at__lte=now)
    result.exports = expired.count()
    if not dry_run:
        _drop_export_files(expired, storage=storage)
        expired.update(purged_at=now, link_token_hash=None)
    progress(f"expired exports: {result.exports}")

    leftover = IdentityDocument.objects.filter(request__state__in=FINAL_STATES)
    result.documents = leftover.count()
    if not dry_run:
        leftover.delete()
    progress(f"identity documents of closed requests: {result.documents}")

    live = set(DataExport.objects.filter(purged_at=None).values_list("file_name", flat=True))
    for name in shared_storage.list_files(storage):
        if not exports.is_export_file(name):
            continue  # not ours: a storage shared with other files keeps them
        if shared_storage.is_partial(name):
            # Left by a killed worker; one younger than a day may still be being written.
            stray = _older_than(storage, name, now - timedelta(days=1))
        else:
            # Not a live export. An hour's grace: a worker publishes the file just before it writes the
            # row, and that row may also have come after ``live`` was read.
            stray = name not in live and _older_than(storage, name, now - timedelta(hours=1))
        if stray:
            result.stray_files += 1
            if not dry_run:
                storage.delete(name)
    progress(f"stray export files: {result.stray_files}")

    cutoff = _months_before(now, settings.DSR_RETENTION_MONTHS)
    old_requests = RightsRequest.objects.filter(
        state__in=FINAL_STATES, closed_at__lt=cutoff, erased_at__isnull=True
    )
    for number, pk in enumerate(old_requests.values_list("pk", flat=True).iterator(), start=1):
        result.requests += 1
        if not dry_run:
            tombstone_request(request_id=pk)
        if number % 1000 == 0:
            progress(f"requests erased so far: {number}")
    progress(f"requests closed before {cutoff:%Y-%m-%d} erased: {result.requests}")
    return result


def _months_before(now: datetime, months: int) -> datetime:
    """The same moment ``months`` calendar months earlier (clamped to the month's last day)."""
    import calendar

    month_index = now.year * 12 + now.month - 1 - months
    year, month = divmod(month_index, 12)
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    return now.replace(year=year, month=month + 1, day=day)


def reindex_email_hashes(
    *, actor: Actor, batch_size: int = 500, progress: Callable[[int, int], object] | None = None
) -> tuple[int, int]:
    """Recompute every request's email blind index under the current ``DSR_BLIND_INDEX_KEY``.

    For after the key changed (a leak, or moving off the ``SECRET_KEY``-derived default): without it no
    earlier request is found by email any more. Reads the encrypted email, so only requests that still
    hold one are reindexed; a tombstone keeps its old hash (its email is gone), which then simply no
    longer matches. Batches by primary key and is safe to run again. Returns ``(updated, skipped)``.
    """
    updated = skipped = 0
    last_pk = 0
    while True:
        batch = list(RightsRequest.objects.filter(pk__gt=last_pk).order_by("pk")[:batch_size])
        if not batch:
            break
        last_pk = batch[-1].pk
        changed = []
        for rights_request in batch:
            if not rights_request.email:
                skipped += 1
                continue
            fresh = tokens.email_blind_index(rights_request.email)
            if fresh != rights_request.email_hash:
                rights_request.email_hash = fresh
                changed.append(rights_request)
        RightsRequest.objects.bulk_update(changed, ["email_hash"])
        updated += len(changed)
        if progress:
            progress(updated, skipped)
    logger.info(
        "email blind index recomputed: %d updated, %d without an email, by %s", updated, skipped, actor
    )
    return updated, skipped
