"""Connect tenant registry: the only customer data the policy lets the apps keep."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from fernet_fields import EncryptedTextField


class Registration(models.Model):
    """One Atlassian site (tenant) that installed the app, as its install payload described it.

    ``client_key`` is an identifier, kept plain and unique so lookups by the JWT ``iss`` are one indexed
    query. ``shared_secret`` signs every request from that site, so it is encrypted in the application
    tier (fernet_fields, keys from ``FERNET_KEYS``) and never shown, logged or serialized in plain text.
    """

    class State(models.TextChoices):
        INSTALLED = "installed", _("Installed")
        ENABLED = "enabled", _("Enabled")
        DISABLED = "disabled", _("Disabled")
        UNINSTALLED = "uninstalled", _("Uninstalled")

    client_key = models.CharField(_("client key"), max_length=255, unique=True)
    shared_secret = EncryptedTextField(_("shared secret"))
    base_url = models.URLField(_("site URL"), max_length=500)
    display_url = models.URLField(_("display URL"), max_length=500, blank=True)
    product_type = models.CharField(_("product"), max_length=50)
    description = models.CharField(_("description"), max_length=500, blank=True)
    service_entitlement_number = models.CharField(_("SEN"), max_length=100, blank=True)
    plugins_version = models.CharField(_("plugins version"), max_length=100, blank=True)
    server_version = models.CharField(_("server version"), max_length=100, blank=True)
    oauth_client_id = models.CharField(_("OAuth client id"), max_length=255, blank=True)
    # Atlassian's ID of the site, when the install payload carries it: how Forge installations of the
    # same site find this registration (docs/forge.md).
    cloud_id = models.CharField(_("cloud ID"), max_length=100, blank=True, db_index=True)
    state = models.CharField(_("state"), max_length=20, choices=State.choices, default=State.INSTALLED)
    installed_at = models.DateTimeField(_("installed at"))
    updated_at = models.DateTimeField(_("updated at"))
    enabled_at = models.DateTimeField(_("enabled at"), null=True, blank=True)
    disabled_at = models.DateTimeField(_("disabled at"), null=True, blank=True)
    uninstalled_at = models.DateTimeField(_("uninstalled at"), null=True, blank=True)
    # Staff's own switch, apart from Atlassian's lifecycle state: a blocked site's requests are refused
    # whatever Atlassian says, so its next "enabled" callback cannot undo a block staff put on.
    blocked_at = models.DateTimeField(_("blocked by staff at"), null=True, blank=True)

    class Meta:
        verbose_name = _("registration")
        verbose_name_plural = _("registrations")
        ordering = ["-installed_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state__in=["installed", "enabled", "disabled", "uninstalled"]),
                name="registration_state_valid",
            ),
            models.CheckConstraint(condition=~models.Q(client_key=""), name="registration_client_key_set"),
        ]
        indexes = [models.Index(fields=["state", "product_type"])]

    def __str__(self):
        return self.client_key

    def __repr__(self):
        # Never include the secret, even in a debugger or a traceback's locals.
        return f"<Registration {self.client_key} {self.state}>"


class UsageCount(models.Model):
    """Total uses of one app feature (Connect module) on one day: the policy's anonymized usage statistics.

    Deliberately holds no account ID, client key or site: only the day, the module key and a count, so
    the table is not personal data and never needs exporting or erasing for a rights request.
    """

    day = models.DateField(_("day"))
    module = models.CharField(_("module"), max_length=100)
    count = models.PositiveBigIntegerField(_("uses"), default=0)

    class Meta:
        verbose_name = _("usage count")
        verbose_name_plural = _("usage counts")
        ordering = ["-day", "module"]
        constraints = [
            # The upsert in usage_counts conflicts on exactly this pair.
            models.UniqueConstraint(fields=["day", "module"], name="usagecount_day_module_unique"),
            models.CheckConstraint(condition=~models.Q(module=""), name="usagecount_module_set"),
        ]

    def __str__(self):
        return f"{self.day} {self.module}: {self.count}"


class UsageFlush(models.Model):
    """One batch of buffered usage counts that ``flush_usage_counts`` added to ``UsageCount``.

    The batch id is inserted in the same transaction as the counts, so a flusher that dies after
    committing and before deleting the batch from Redis cannot add it twice: the next run finds the id
    here (``usage_counts``). Rows are pruned after a week. No personal data: a random id, a day, a total.
    """

    batch = models.CharField(_("batch"), max_length=32, unique=True)
    day = models.DateField(_("day"))
    uses = models.PositiveBigIntegerField(_("uses"))
    flushed_at = models.DateTimeField(_("flushed at"), db_index=True)

    class Meta:
        verbose_name = _("usage count flush")
        verbose_name_plural = _("usage count flushes")
        ordering = ["-flushed_at"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(batch=""), name="usageflush_batch_set"),
        ]

    def __str__(self):
        return f"{self.day} +{self.uses} ({self.batch})"


class PersonalDataReport(models.Model):
    """Where the personal data reporting cycle stands: one row, the schedule Atlassian last asked for.

    Atlassian's answer to each report says (``Cycle-Period``) how many hours until the next one is due;
    the daily command reads ``next_due_at`` and does nothing before then. A run that fails keeps the
    report due (after a short delay), so no account is left unreported.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    # Empty: due now (never run, or nothing to report last time).
    next_due_at = models.DateTimeField(_("next report due"), null=True, blank=True)
    cycle_period_hours = models.PositiveIntegerField(_("cycle period (hours)"), null=True, blank=True)
    last_run_at = models.DateTimeField(_("last run"), null=True, blank=True)
    last_accounts = models.PositiveIntegerField(_("accounts in the last run"), default=0)
    last_failed_batches = models.PositiveIntegerField(_("failed batches in the last run"), default=0)

    class Meta:
        verbose_name = _("personal data report schedule")
        verbose_name_plural = _("personal data report schedule")
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="personaldatareport_single_row"),
        ]

    def __str__(self):
        return f"next report due {self.next_due_at or 'now'}"


class ErasureLedgerEntry(models.Model):
    """One identifier a data subject's erasure (Art. 17) removed, kept as a keyed hash so it stays erased.

    Backups of registrations are kept up to 12 months; restoring one would bring an erased site back. The
    ledger lets ``restore_registrations`` erase those records again. It holds no personal data: only an
    HMAC-SHA256 of the identifier (key derived from the settings, see ``erasure_ledger``), which cannot be
    turned back into the identifier and matches it only for whoever holds the key. ``pending`` is for a
    site whose record had to stay because the app is still installed there: its uninstall deletes it.
    """

    class Kind(models.TextChoices):
        CLIENT_KEY = "client_key", _("site (client key)")
        ACCOUNT_ID = "account_id", _("Atlassian account ID")
        EMAIL_HASH = "email_hash", _("email address (blind index)")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    key_hash = models.CharField(_("keyed hash"), max_length=64)
    # Which key made the hash (a fingerprint, not the key): a hash made under a key since replaced can no
    # longer be matched, and a restore says so instead of silently matching nothing.
    key_id = models.CharField(_("key fingerprint"), max_length=16)
    erased_at = models.DateTimeField(_("erased at"))
    pending = models.BooleanField(
        _("pending (app still installed)"),
        default=False,
        help_text=_("The site's record stays until the app is uninstalled there, then it is deleted."),
    )
    # The rights request (or other process) that last erased this identifier: a random reference, no
    # personal data; lets staff see a request's site erasure on its page after its tombstone.
    reference = models.CharField(_("erased for"), max_length=40, blank=True)

    class Meta:
        verbose_name = _("erasure ledger entry")
        verbose_name_plural = _("erasure ledger")
        ordering = ["-erased_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "key_hash"], name="erasureledger_kind_hash_unique"),
            models.CheckConstraint(
                condition=models.Q(kind__in=["client_key", "account_id", "email_hash"]),
                name="erasureledger_kind_valid",
            ),
            models.CheckConstraint(condition=~models.Q(key_hash=""), name="erasureledger_hash_set"),
            # Only a site's record can be kept for a while (the app still installed there).
            models.CheckConstraint(
                condition=models.Q(pending=False) | models.Q(kind="client_key"),
                name="erasureledger_only_sites_pending",
            ),
        ]
        indexes = [models.Index(fields=["reference"], name="erasureledger_reference")]

    def __str__(self):
        return f"{self.get_kind_display()} erased {self.erased_at:%Y-%m-%d}"


class InstallTokenUse(models.Model):
    """A signed lifecycle token (RS256) already accepted: kept until it expires, so it works only once.

    The body of a signed install is not covered by the signature, so a captured token could otherwise be
    replayed with another body (another shared secret, another ``baseUrl``) until its ``exp``. The key is
    the SHA-256 of the token's ``jti`` (with its issuer) when it has one, else of the whole token: no
    token, secret or site is stored. Rows past ``expires_at`` are deleted by the next accepted install.
    """

    token_hash = models.CharField(_("token hash"), max_length=64, unique=True)
    expires_at = models.DateTimeField(_("expires at"), db_index=True)
    used_at = models.DateTimeField(_("used at"), default=timezone.now)

    class Meta:
        verbose_name = _("install token use")
        verbose_name_plural = _("install token uses")
        default_permissions = ()
        constraints = [
            models.CheckConstraint(condition=~models.Q(token_hash=""), name="installtokenuse_hash_set"),
        ]

    def __str__(self):
        return f"install token used {self.used_at:%Y-%m-%d %H:%M}"


class ForgeInstallation(models.Model):
    """One installation of a Forge (or Connect-on-Forge) app on a site, as Forge's lifecycle events say.

    Forge's side of a tenant, beside the Connect ``Registration`` of the same site (``registration``, found
    by cloud ID or site URL, see docs/forge.md), never inside it: a site may have either or both. Holds no
    secret (Forge signs its calls with Atlassian's keys) and no personal data. ``last_event_at`` is the
    ``iat`` of the newest lifecycle event applied, so a replayed or late event cannot undo a newer one.
    """

    class State(models.TextChoices):
        INSTALLED = "installed", _("Installed")
        UNINSTALLED = "uninstalled", _("Uninstalled")

    installation_id = models.CharField(_("installation ID"), max_length=255, unique=True)
    app_id = models.CharField(_("Forge app ID"), max_length=36)
    environment_type = models.CharField(_("environment"), max_length=30, blank=True)
    environment_id = models.CharField(_("environment ID"), max_length=255, blank=True)
    cloud_id = models.CharField(_("cloud ID"), max_length=100, db_index=True)
    site_url = models.URLField(_("site URL"), max_length=500, blank=True)
    app_version = models.CharField(_("app version"), max_length=50, blank=True)
    state = models.CharField(_("state"), max_length=20, choices=State.choices)
    installed_at = models.DateTimeField(_("installed at"), null=True, blank=True)
    upgraded_at = models.DateTimeField(_("upgraded at"), null=True, blank=True)
    uninstalled_at = models.DateTimeField(_("uninstalled at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"))
    last_event_at = models.DateTimeField(_("newest event applied"))
    registration = models.ForeignKey(
        Registration,
        verbose_name=_("Connect registration of the same site"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="forge_installations",
    )

    class Meta:
        verbose_name = _("Forge installation")
        verbose_name_plural = _("Forge installations")
        ordering = ["-updated_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state__in=["installed", "uninstalled"]),
                name="forgeinstallation_state_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(installation_id="") & ~models.Q(cloud_id="") & ~models.Q(app_id=""),
                name="forgeinstallation_ids_set",
            ),
        ]

    def __str__(self):
        return f"{self.site_url or self.cloud_id} ({self.get_state_display()})"


class FitFailureCount(models.Model):
    """Refused Forge invocation tokens per day and reason (``expired``, ``aud``, ``kid`` ...) for staff.

    Like ``UsageCount``, only a day, a reason code and a count: nothing about who sent the token.
    """

    day = models.DateField(_("day"))
    reason = models.CharField(_("reason"), max_length=40)
    count = models.PositiveBigIntegerField(_("refusals"), default=0)

    class Meta:
        verbose_name = _("Forge token refusal count")
        verbose_name_plural = _("Forge token refusal counts")
        ordering = ["-day", "reason"]
        constraints = [
            models.UniqueConstraint(fields=["day", "reason"], name="fitfailurecount_day_reason_unique"),
            models.CheckConstraint(condition=~models.Q(reason=""), name="fitfailurecount_reason_set"),
        ]

    def __str__(self):
        return f"{self.day} {self.reason}: {self.count}"
