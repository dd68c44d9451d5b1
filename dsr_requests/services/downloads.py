"""Fulfilment downloads: one-time download codes for an export and the transfer links sent to a
recipient, each download logged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from artemis_portal import storage as shared_storage
from dsr_requests import tokens
from dsr_requests.services._base import ActionRefused, _event, _lock, logger
from dsr_requests.services.outbox import queue_requester_email
from dsr_requests.states import REQUESTER

if TYPE_CHECKING:
    from datetime import datetime
    from typing import IO

    from dsr_requests.models import DataExport, RightsRequest
    from dsr_requests.states import Actor


def downloadable_export(
    *, rights_request: RightsRequest, kind: str = "zip", now: datetime | None = None
) -> DataExport | None:
    """The request's export of ``kind`` while it may still be downloaded, else None."""
    now = now or timezone.now()
    return rights_request.exports.filter(kind=kind, purged_at=None, expires_at__gt=now).first()


def send_download_code(
    *, rights_request: RightsRequest, actor: Actor = REQUESTER, now: datetime | None = None
) -> None:
    """Email the requester a one-time code that unlocks their copy; earlier unused codes stop working."""
    from dsr_requests.models import DownloadCode

    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock(rights_request)
        export = downloadable_export(rights_request=locked, now=now)
        if export is None:
            raise ActionRefused(_("There is no copy to download, or its download period has ended."))
        export.codes.filter(used_at__isnull=True).delete()
        code, code_hash = tokens.new_download_code()
        DownloadCode.objects.create(
            export=export,
            code_hash=code_hash,
            expires_at=now + timedelta(minutes=settings.DSR_DOWNLOAD_CODE_TTL_MINUTES),
        )
        queue_requester_email(
            rights_request=locked,
            event="download_code",
            code=code,
            minutes=settings.DSR_DOWNLOAD_CODE_TTL_MINUTES,
        )
        _event(locked, actor=actor, note=_("Download code emailed"), public=False)


def _log_download(
    locked: RightsRequest, export: DataExport, channel: str, *, actor: Actor, now: datetime
) -> None:
    from dsr_requests.models import ExportDownload

    ExportDownload.objects.create(export=export, channel=channel)
    _event(
        locked,
        actor=actor,
        note=_("Your data was downloaded (%(when)s UTC).") % {"when": now.strftime("%Y-%m-%d %H:%M")},
        public=True,
    )


class ExportUnavailable(Exception):
    """An export's file cannot be read now: its storage did not answer (``temporary``: try again in a
    while) or the file is gone or damaged (staff must prepare it again). The code or link stays unused."""

    def __init__(self, *, temporary: bool) -> None:
        super().__init__("export storage unreachable" if temporary else "export file missing or damaged")
        self.temporary = temporary


def _open_for_download(export: DataExport) -> IO[bytes]:
    """Open the export's file and decrypt its first frame before a code or link is used up, so a file
    that cannot be sent costs the requester nothing; returns an ``exports.PlainStream``."""
    from dsr_requests import exports

    try:
        return exports.open_plain(export.file_name)
    except exports.ExportMissing:
        logger.error("export file missing for request id %s", export.request_id)
        raise ExportUnavailable(temporary=False) from None
    except exports.ExportError as exc:  # damaged, or no key in FERNET_KEYS opens it: staff prepare it again
        logger.error("export file unreadable for request id %s: %s", export.request_id, exc)
        raise ExportUnavailable(temporary=False) from None
    except shared_storage.STORAGE_ERRORS as exc:
        logger.warning("export storage unreachable (%s)", type(exc).__name__)
        raise ExportUnavailable(temporary=True) from None


def _close(stream: IO[bytes] | None) -> None:
    if stream is not None:
        stream.close()


@sensitive_variables("code")
def redeem_download_code(
    *, rights_request: RightsRequest, code: str, actor: Actor = REQUESTER, now: datetime | None = None
) -> tuple[DataExport, IO[bytes]]:
    """Use up a download code of this request and log the download; returns ``(export, plain stream)``.

    Raises ``ActionRefused`` for a code that does not work and ``ExportUnavailable`` when the file cannot
    be read, both before anything is used up.
    """
    from dsr_requests.models import DownloadCode, ExportDownload

    now = now or timezone.now()
    stream = None
    try:
        with transaction.atomic():
            locked = _lock(rights_request)
            found = (
                DownloadCode.objects.select_for_update()
                .filter(code_hash=tokens.download_code_hash(code), export__request=locked)
                .select_related("export")
                .first()
            )
            if found is None:
                raise ActionRefused(_("This code is not valid. Check it, or ask for a new one."))
            if found.used_at is not None:
                raise ActionRefused(_("This code has already been used. Ask for a new one."))
            if found.expires_at <= now:
                raise ActionRefused(_("This code has expired. Ask for a new one."))
            if downloadable_export(rights_request=locked, now=now) is None:
                raise ActionRefused(_("The download period of your copy has ended."))
            stream = _open_for_download(found.export)
            found.used_at = now
            found.save(update_fields=["used_at"])
            _log_download(locked, found.export, ExportDownload.Channel.CODE, actor=actor, now=now)
    except BaseException:
        _close(stream)  # opened, then the transaction failed: nothing will read it
        raise
    return found.export, stream


def transfer_export_for_link(token: str, *, now: datetime | None = None) -> DataExport:
    """The transfer export a link's token names, if the link is unused and unexpired; else ActionRefused."""
    from dsr_requests.models import DataExport

    now = now or timezone.now()
    export = (
        DataExport.objects.filter(link_token_hash=tokens.status_token_hash(token))
        .select_related("request")
        .first()
    )
    if export is None:
        raise ActionRefused(_("This link is not valid."))
    if export.link_used_at is not None:
        raise ActionRefused(_("This link has already been used; each transfer link works once."))
    if export.purged_at is not None or export.expires_at <= now:
        raise ActionRefused(_("This link has expired."))
    return export


@sensitive_variables("token")
def redeem_transfer_link(
    *, token: str, actor: Actor = REQUESTER, now: datetime | None = None
) -> tuple[DataExport, IO[bytes]]:
    """Use up a transfer link and log the download; returns ``(export, plain stream)``; refusals and an
    unreadable file as in ``redeem_download_code``."""
    from dsr_requests.models import DataExport, ExportDownload

    now = now or timezone.now()
    stream = None
    try:
        with transaction.atomic():
            export = transfer_export_for_link(token, now=now)
            locked = _lock(export.request)
            export = DataExport.objects.select_for_update().get(pk=export.pk)
            if export.link_used_at is not None:
                raise ActionRefused(_("This link has already been used; each transfer link works once."))
            stream = _open_for_download(export)
            export.link_used_at = now
            export.save(update_fields=["link_used_at"])
            _log_download(locked, export, ExportDownload.Channel.LINK, actor=actor, now=now)
    except BaseException:
        _close(stream)
        raise
    return export, stream
