"""Staff two-factor: enrolment, verification and backup codes; and the audit's retention and CSV.

Views stay thin and call these. Verification goes through django-otp's devices, whose throttling
(``OTP_*_THROTTLE_FACTOR``) doubles the wait after each wrong code; the view also reports each failure
to django-axes, so wrong codes count towards the same lockout as wrong passwords.
"""

import csv
import re
from base64 import b32encode
from dataclasses import dataclass
from datetime import timedelta

import segno
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_otp import devices_for_user, user_has_device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from security.models import AccessAction, AccessEvent

BACKUP_CODE_COUNT = 10
TOTP_DEVICE_NAME = "authenticator"
BACKUP_DEVICE_NAME = "backup codes"
_TOTP_SHAPE = re.compile(r"^\d{6,8}$")


def requires_second_factor(user):
    """Whether ``user`` must pass a second factor before the admin opens.

    Every staff user in production. With DEBUG on and ``STAFF_2FA_REQUIRED`` off, only staff who
    have enrolled a device (so that a developer who enrols still exercises the real flow).
    """
    if not (getattr(user, "is_authenticated", False) and user.is_staff):
        return False
    return settings.STAFF_2FA_REQUIRED or user_has_device(user)


def has_authenticator(user):
    """Whether ``user`` has a confirmed authenticator (TOTP) device."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def pending_authenticator(*, user):
    """The unconfirmed TOTP device being enrolled for ``user``; created on first call, reused after."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows: the secret as text (grouped) and as an inline SVG QR code."""

    secret: str
    qr_svg: str


def enrolment_of(device):
    """The secret in base32 (as authenticator apps take it by hand) and the otpauth:// URL as a QR code."""
    secret = b32encode(device.bin_key).decode("ascii").rstrip("=")
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    qr_svg = segno.make(device.config_url, error="m").svg_inline(scale=4, border=2, dark="#000", light="#fff")
    return Enrolment(secret=grouped, qr_svg=qr_svg)


def normalise_token(token):
    """Codes as people type them: spaces and dashes ignored, letters in lower case."""
    return re.sub(r"[\s-]", "", str(token or "")).lower()[:32]


def confirm_enrolment(*, user, device_id, token):
    """Confirm the pending authenticator with its first code; returns the new backup codes, or None.

    On success the device replaces any earlier authenticator, and a fresh set of single-use backup
    codes replaces any earlier set: the caller shows them once and never again.
    """
    token = normalise_token(token)
    with transaction.atomic():
        device = (
            TOTPDevice.objects.select_for_update().filter(user=user, pk=device_id, confirmed=False).first()
        )
        if device is None or not _TOTP_SHAPE.match(token) or not device.verify_token(token):
            return None, None
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        return device, _new_backup_codes(user)


def _new_backup_codes(user):
    StaticDevice.objects.filter(user=user).delete()
    static = StaticDevice.objects.create(user=user, name=BACKUP_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=static, token=code) for code in codes)
    return codes


@dataclass(frozen=True)
class Verification:
    """The outcome of a code: the device it matched (or None), whether it was a backup code, and
    how long the device asks to wait when it refused because of earlier wrong codes."""

    device: object
    backup_code: bool
    wait_seconds: int = 0


def verify_second_factor(*, user, token):
    """Check ``token`` against the user's authenticator (6-8 digits) or backup codes (anything else).

    Only devices of the kind the code's shape names are tried, so a mistyped authenticator code does
    not also throttle the backup codes. A backup code is used up by a successful check.
    """
    token = normalise_token(token)
    backup = not _TOTP_SHAPE.match(token)
    kind = StaticDevice if backup else TOTPDevice
    wait = 0
    with transaction.atomic():
        for device in devices_for_user(user, confirmed=True, for_verify=True):
            if not isinstance(device, kind):
                continue
            allowed, details = device.verify_is_allowed()
            if not allowed:
                locked_until = (details or {}).get("locked_until")
                if locked_until:
                    wait = max(wait, int((locked_until - timezone.now()).total_seconds()) + 1)
                continue
            if token and device.verify_token(token):
                return Verification(device=device, backup_code=backup)
    return Verification(device=None, backup_code=backup, wait_seconds=wait)


def reset_second_factor(*, user, actor):
    """Remove every device of ``user`` (lost phone) and reopen enrolment for STAFF_2FA_ENROL_DAYS.

    ``actor`` names who reset it (a command says so in words). The reset is written to the audit, which
    is also what reopens the set-up period (``enrolment_deadline``): an append-only row, so nobody can
    reopen it without leaving a trace.
    """
    from security import audit

    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        audit.record(
            None,
            action=AccessAction.OTP_RESET,
            obj=user,
            user=actor if getattr(actor, "pk", None) else None,
            username=str(actor)[:150],
        )


def enrolment_deadline(*, user):
    """Until when ``user`` may enrol a first authenticator: STAFF_2FA_ENROL_DAYS after the account was
    created or its two-factor last reset, whichever is later.

    Without it, a staff account that never enrolled would stay open forever to whoever first logs in
    with its password, and could bind their own phone to it.
    """
    from django.contrib.contenttypes.models import ContentType

    last_reset = (
        AccessEvent.objects.filter(
            action=AccessAction.OTP_RESET,
            content_type=ContentType.objects.get_for_model(user),
            object_id=str(user.pk),
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    opened = max(filter(None, (user.date_joined, last_reset)))
    return opened + timedelta(days=settings.STAFF_2FA_ENROL_DAYS)


def may_enrol(*, user, now=None):
    """Whether ``user`` may start an enrolment now: they have an authenticator (the view then asks for
    it first, to replace it), or the set-up period is still open."""
    return has_authenticator(user) or (now or timezone.now()) < enrolment_deadline(user=user)


# --- retention and export of the audit ---------------------------------------------------------------


def prune_access_events(*, now=None):
    """Delete audit rows older than ``ACCESS_EVENT_RETENTION_DAYS``; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.ACCESS_EVENT_RETENTION_DAYS)
    return AccessEvent.objects.prune(before=cutoff)


CSV_HEADER = (
    "when",
    "username",
    "action",
    "succeeded",
    "object type",
    "object id",
    "object",
    "detail",
    "client ip",
    "user agent",
    "request id",
)


def _cell(value):
    """Neutralise text a spreadsheet would run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    def write(self, value):
        return value


def access_events_csv(queryset):
    """The events of ``queryset`` as CSV lines, one at a time (for a streaming response)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    rows = queryset.values_list(
        "created_at",
        "username",
        "action",
        "succeeded",
        "content_type__model",
        "object_id",
        "object_repr",
        "detail",
        "ip",
        "user_agent",
        "request_id",
    )
    for row in rows.iterator(chunk_size=2000):
        created_at, *rest = row
        yield writer.writerow([_cell(timezone.localtime(created_at).isoformat()), *map(_cell, rest)])
