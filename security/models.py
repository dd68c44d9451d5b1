"""The append-only audit of staff access (``AccessEvent``) and the guard that lets retention prune it.

Rows are written once and never changed: the model refuses updates and deletes in code, and a database
trigger (migration 0001) refuses them in SQL, so neither a bug nor a careless shell session can rewrite
history. The one way out is retention: ``AccessEvent.objects.prune(before=...)`` opens a
``PruneWindow`` row inside its own transaction, and the trigger lets a DELETE through only for rows
older than that window's cutoff while the row exists (see README.md, "Retention").
"""

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AppendOnlyError(Exception):
    """An attempt to change or delete an audit row."""


class AccessAction(models.TextChoices):
    """What a staff member (or someone trying to be one) did."""

    LOGIN = "login", _("Logged in (password)")
    LOGOUT = "logout", _("Logged out")
    LOGIN_FAILED = "login_failed", _("Failed login")
    LOCKED_OUT = "locked_out", _("Locked out")
    OTP_VERIFIED = "otp_verified", _("Second factor verified (authenticator)")
    OTP_FAILED = "otp_failed", _("Second factor refused")
    OTP_ENROLLED = "otp_enrolled", _("Authenticator enrolled")
    OTP_ENROL_REFUSED = "otp_enrol_refused", _("Enrolment refused (set-up period over)")
    OTP_RESET = "otp_reset", _("Two-factor reset (a new enrolment may start)")
    BACKUP_CODE_USED = "backup_code_used", _("Backup code used")
    VIEW_PERSONAL_DATA = "view_personal_data", _("Viewed personal data")
    TRANSITION = "transition", _("Staff action on a request")
    DOWNLOAD_DOCUMENT = "download_document", _("Downloaded an identity document")
    DOWNLOAD_EXPORT = "download_export", _("Downloaded an export")


class AccessEventQuerySet(models.QuerySet):
    """Bulk updates and deletes are refused like single ones; only ``prune`` may delete."""

    def update(self, **kwargs):
        raise AppendOnlyError("access events are append-only")

    def delete(self):
        raise AppendOnlyError("access events are append-only; use prune_access_events")

    def prune(self, *, before):
        """Delete every event older than ``before``; returns how many. The one sanctioned delete.

        Opens a prune window (a row the database trigger checks) in the same transaction, so the
        trigger's exception holds for this transaction only and for rows older than ``before`` only.
        """
        with transaction.atomic():
            window = PruneWindow.objects.create(cutoff=before)
            doomed = AccessEvent.objects.filter(created_at__lt=before)
            deleted = doomed._raw_delete(doomed.db)
            window.delete()
        return deleted


class AccessEvent(models.Model):
    """One access by staff: who, what, which object (by reference only), when, from where.

    No personal data of requesters: the object is named by content type, id and its reference
    (e.g. ``DSR-…``), never by a name or an email.
    """

    Action = AccessAction

    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    # No foreign-key constraint and no cascade: deleting a user must neither change nor delete their
    # history (the trigger would refuse it anyway); the username is kept beside the id.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    username = models.CharField(_("username"), max_length=150, blank=True)
    action = models.CharField(_("action"), max_length=30, choices=Action.choices)
    succeeded = models.BooleanField(_("succeeded"), default=True)
    content_type = models.ForeignKey(
        ContentType,
        verbose_name=_("object type"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=100, blank=True)
    detail = models.CharField(_("detail"), max_length=200, blank=True)
    ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=200, blank=True)
    request_id = models.CharField(_("request id"), max_length=128, blank=True)

    objects = AccessEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("access event")
        verbose_name_plural = _("access events")
        ordering = ["-created_at", "-id"]
        default_permissions = ("view",)
        constraints = [
            models.CheckConstraint(
                condition=models.Q(action__in=AccessAction.values), name="security_access_action_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["user", "created_at"], name="security_event_user_idx"),
            models.Index(fields=["content_type", "object_id"], name="security_event_object_idx"),
        ]

    def __str__(self):
        return f"{self.get_action_display()} {self.object_repr}".strip()

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("access events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("access events are append-only; use prune_access_events")


class PruneWindow(models.Model):
    """Exists only inside the transaction of ``AccessEvent.objects.prune``: the trigger's permission slip."""

    cutoff = models.DateTimeField()

    class Meta:
        default_permissions = ()

    def __str__(self):
        return f"prune window before {self.cutoff}"
