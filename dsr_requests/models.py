"""Rights requests from data subjects, the proof of who they are, and the emails sent to them.

Personal data (name, email, free text, identity documents, email bodies) is encrypted in the application
tier with fernet_fields; lookups go through keyed hashes (``email_hash``, ``status_token_hash``,
``code_hash``) so nothing has to be decrypted to find a row. Every write goes through ``services.py``.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from fernet_fields import EncryptedEmailField, EncryptedTextField

from dsr_requests import deadlines
from dsr_requests.deadlines import HoldReason, Regime
from dsr_requests.list_order import LIST_ORDER_INDEXES
from dsr_requests.rollup_models import RequestCount  # noqa: F401 (a model of this app, kept beside its rollup)


class RequestType(models.TextChoices):
    """The rights the privacy policy grants, one per request."""

    REVIEW = "review", _("Review the personal data you hold about me")
    CHANGE = "change", _("Change (correct) my personal data")
    DELETE = "delete", _("Delete my personal data")
    PROCESSING = "processing", _("Tell me how you process my personal data")
    COPY = "copy", _("Give me a copy of my personal data")
    TRANSFER = "transfer", _("Transfer my personal data")


class RejectionGround(models.TextChoices):
    """Why a request was refused, in the words of the request log: a category, never free text.

    The free-text reason goes to the requester and may name them; the log regulators ask for must not.
    """

    IDENTITY_NOT_PROVEN = "identity_not_proven", _("Identity not proven")
    NOTHING_HELD = "nothing_held", _("No personal data held about the requester")
    UNFOUNDED = "unfounded", _("Manifestly unfounded")
    EXCESSIVE = "excessive", _("Excessive or repetitive")
    EXEMPTION = "exemption", _("A legal exemption applies")
    OUT_OF_SCOPE = "out_of_scope", _("Not a data-protection request")
    OTHER = "other", _("Other")


class RequestState(models.TextChoices):
    """Every state of the design's workflow; the labels are what the requester reads."""

    SUBMITTED = "submitted", _("Waiting for email confirmation")
    VERIFYING = "verifying", _("Checking identity")
    IN_REVIEW = "in_review", _("In review")
    APPROVED = "approved", _("Approved")
    FULFILLING = "fulfilling", _("Being carried out")
    COMPLETED = "completed", _("Completed")
    REJECTED = "rejected", _("Rejected")
    WITHDRAWN = "withdrawn", _("Withdrawn")
    CLOSED_UNVERIFIED = "closed_unverified", _("Closed: email never confirmed")
    ON_HOLD = "on_hold", _("On hold: waiting for you")


class Concerns(models.TextChoices):
    """What the request is about, so staff know where to look."""

    ACCOUNT = "account", _("My Atlassian account")
    SITE = "site", _("An Atlassian site I administer")
    OTHER = "other", _("Something else, or I am not sure")


class TransferTo(models.TextChoices):
    """Where a transfer (portability) request sends the data."""

    REQUESTER = "requester", _("To me")
    ORGANISATION = "organisation", _("To another organisation")


class Channel(models.TextChoices):
    """How a request reached us: the public form, or a channel the privacy policy offers that staff log.

    The request log records it per request (CCPA regs §7101(a): "the manner in which the request was made").
    """

    WEB = "web", _("Web form")
    EMAIL = "email", _("Email")
    POST = "post", _("Post")
    PHONE = "phone", _("Phone")


class RightsRequest(models.Model):
    """One request by one person to exercise one of the rights the privacy policy grants."""

    Type = RequestType
    State = RequestState
    Concerns = Concerns
    TransferTo = TransferTo
    Channel = Channel

    # The fields that identify the requester: shown in admin only with view_personal_data, blanked when a
    # request is closed unverified or becomes a tombstone.
    PERSONAL_FIELDS = (
        "name",
        "email",
        "site_url",
        "details",
        "transfer_email",
        "account_id",
        "verified_site_url",
        "agent_name",
        "agent_email",
    )
    # What a tombstone blanks: the personal fields and the site binding. The email blind index stays, so a
    # later request from the same address can be told its data was erased.
    TOMBSTONE_FIELDS = (*PERSONAL_FIELDS, "site_client_key")

    reference = models.CharField(_("reference"), max_length=16, unique=True, editable=False)
    request_type = models.CharField(_("request type"), max_length=20, choices=Type.choices)
    state = models.CharField(_("state"), max_length=20, choices=State.choices, default=State.SUBMITTED)
    # Where an on_hold request returns to; empty whenever the request is not on hold.
    held_from_state = models.CharField(
        _("held from state"), max_length=20, choices=State.choices, blank=True, default=""
    )

    name = EncryptedTextField(_("name"), blank=True)
    email = EncryptedEmailField(_("email"), blank=True)
    # Blind index: HMAC-SHA256 of the normalized email; empty once the personal data is erased.
    email_hash = models.CharField(_("email hash"), max_length=64, blank=True, db_index=True, editable=False)
    site_url = EncryptedTextField(_("Atlassian site URL"), blank=True)
    concerns = models.CharField(_("concerns"), max_length=20, choices=Concerns.choices, blank=True)
    details = EncryptedTextField(_("details"), blank=True)
    transfer_to = models.CharField(_("transfer to"), max_length=20, choices=TransferTo.choices, blank=True)
    transfer_email = EncryptedEmailField(_("receiving organisation's email"), blank=True)
    country = models.CharField(_("country"), max_length=2, blank=True, help_text=_("ISO 3166-1 alpha-2"))

    # When the request reached us, which starts every clock: the submission for the web form, the date
    # received (not the date logged) for a request staff log from email, post or phone.
    received_at = models.DateTimeField(_("received at"))
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices, default=Channel.WEB)
    # A request made by an authorized agent for the person the data is about (CCPA regs §7063): the agent
    # is named here, their written permission is an IdentityDocument of kind agent_permission, and staff
    # record its check as the identity step agent_permission. The flag survives erasure; the name does not.
    by_agent = models.BooleanField(_("made by an authorized agent"), default=False)
    agent_name = EncryptedTextField(_("agent's name"), blank=True)
    agent_email = EncryptedEmailField(_("agent's email"), blank=True)
    policy_due_on = models.DateField(_("policy due date"), null=True, blank=True)
    email_confirmed_at = models.DateTimeField(_("email confirmed at"), null=True, blank=True)
    reminder_sent_at = models.DateTimeField(_("reminder sent at"), null=True, blank=True)
    # Set when the email is confirmed (the link goes out then); only the SHA-256 is kept.
    status_token_hash = models.CharField(
        _("status token hash"), max_length=64, unique=True, null=True, blank=True, editable=False
    )
    # The status link itself, encrypted like the personal fields, so that every later email can carry it
    # (the lookup still goes by the hash). Empty for requests confirmed before it was kept.
    status_token = EncryptedTextField(_("status token"), blank=True, editable=False)

    # Bound by the Atlassian account proof (the Connect JWT's sub and iss).
    account_id = models.CharField(_("Atlassian account ID"), max_length=128, blank=True)
    site_client_key = models.CharField(_("site client key"), max_length=255, blank=True)
    verified_site_url = models.URLField(_("verified site URL"), max_length=500, blank=True)

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    # --- Staff workflow and deadlines: written only by the staff-workflow services -------------------
    Regime = Regime
    regime = models.CharField(_("regime"), max_length=10, choices=Regime.choices, default=Regime.UK_GDPR)
    # Stored so lists, filters and the digest read indexed columns; recomputed by the services whenever
    # receipt, regime, holds or an extension change them (deadlines.py holds the counting rules).
    statutory_due_on = models.DateField(_("statutory due date"), null=True, blank=True)
    effective_due_on = models.DateField(
        _("due date"), null=True, blank=True, db_index=True, help_text=_("The earlier of the two due dates.")
    )
    held_since = models.DateTimeField(_("on hold since"), null=True, blank=True)
    HoldReason = HoldReason
    # Why the running hold was started (set exactly while on hold): only some reasons stop the legal clock.
    hold_reason = models.CharField(
        _("reason for the hold"), max_length=20, choices=HoldReason.choices, blank=True, default=""
    )
    # Completed holds, added up as they end: every hold's working days move the policy date; the calendar
    # days of holds whose reason stops the legal clock move the statutory date (GDPR and UK GDPR only).
    hold_working_days = models.PositiveIntegerField(_("working days on hold"), default=0)
    hold_calendar_days = models.PositiveIntegerField(
        _("calendar days the legal clock stood still"),
        default=0,
        help_text=_("Holds to verify identity or clarify the request; they do not count under CCPA."),
    )
    extended_at = models.DateTimeField(_("extended at"), null=True, blank=True)
    extension_calendar_days = models.PositiveIntegerField(_("extension (calendar days)"), default=0)
    extension_working_days = models.PositiveIntegerField(_("extension (working days)"), default=0)
    extension_reason = models.TextField(_("extension reason"), blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("assignee"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_rights_requests",
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("approved by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    # Erasure needs a second staff member's approval (four eyes), never the first approver's.
    erasure_approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("erasure approved by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    rejection_reason = models.TextField(_("reason for rejection"), blank=True)
    rejection_ground = models.CharField(
        _("ground for rejection"), max_length=30, choices=RejectionGround.choices, blank=True
    )
    # When the request reached a final state (completed, rejected, withdrawn, closed unverified).
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    # Set when the personal data was erased (a delete request, or retention): the row is a tombstone.
    erased_at = models.DateTimeField(_("personal data erased at"), null=True, blank=True)

    class Meta:
        verbose_name = _("rights request")
        verbose_name_plural = _("rights requests")
        ordering = ["-received_at"]
        permissions = [
            ("view_personal_data", _("Can see requesters' personal data")),
            ("view_identity_document", _("Can download identity documents awaiting a decision")),
            ("verify_identity", _("Can record identity checks")),
            ("hold_request", _("Can put requests on hold and resume them")),
            ("reject_request", _("Can reject requests")),
            ("assign_request", _("Can assign requests")),
            ("approve_request", _("Can approve requests")),
            ("approve_erasure", _("Can give the second approval of an erasure")),
            ("extend_deadline", _("Can extend deadlines and change the regime")),
            ("fulfil_request", _("Can start and complete fulfilment")),
            ("export_request_log", _("Can export the request log")),
            ("log_request", _("Can log a request received by email, post or phone")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(request_type__in=RequestType.values), name="dsr_request_type_valid"
            ),
            models.CheckConstraint(condition=Q(state__in=RequestState.values), name="dsr_state_valid"),
            models.CheckConstraint(
                condition=(Q(state="on_hold") & ~Q(held_from_state__in=["", "on_hold"]))
                | (~Q(state="on_hold") & Q(held_from_state="")),
                name="dsr_held_from_state_only_on_hold",
            ),
            models.CheckConstraint(
                condition=Q(request_type="transfer") | Q(transfer_to=""), name="dsr_transfer_to_only_transfer"
            ),
            models.CheckConstraint(condition=~Q(reference=""), name="dsr_reference_set"),
            models.CheckConstraint(condition=Q(channel__in=Channel.values), name="dsr_channel_valid"),
            models.CheckConstraint(condition=Q(regime__in=Regime.values), name="dsr_regime_valid"),
            models.CheckConstraint(
                condition=Q(state="on_hold", held_since__isnull=False)
                | (~Q(state="on_hold") & Q(held_since__isnull=True)),
                name="dsr_held_since_only_on_hold",
            ),
            models.CheckConstraint(
                condition=Q(state="on_hold", hold_reason__in=HoldReason.values)
                | (~Q(state="on_hold") & Q(hold_reason="")),
                name="dsr_hold_reason_only_on_hold",
            ),
            models.CheckConstraint(
                condition=Q(
                    extended_at__isnull=True,
                    extension_calendar_days=0,
                    extension_working_days=0,
                    extension_reason="",
                )
                | (Q(extended_at__isnull=False, extension_calendar_days__gt=0) & ~Q(extension_reason="")),
                name="dsr_extension_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(erasure_approved_by__isnull=True)
                | (Q(request_type="delete") & ~Q(erasure_approved_by=F("approved_by"))),
                name="dsr_erasure_second_approver",
            ),
            models.CheckConstraint(
                condition=~Q(state="rejected") | ~Q(rejection_reason=""), name="dsr_rejection_has_reason"
            ),
            models.CheckConstraint(
                condition=Q(rejection_ground__in=["", *RejectionGround.values])
                & (~Q(state="rejected") | ~Q(rejection_ground="")),
                name="dsr_rejection_has_ground",
            ),
            models.CheckConstraint(
                condition=Q(effective_due_on__isnull=True)
                | Q(effective_due_on=F("policy_due_on"), effective_due_on__lte=F("statutory_due_on"))
                | Q(effective_due_on=F("statutory_due_on"), effective_due_on__lte=F("policy_due_on")),
                name="dsr_effective_due_is_earlier_date",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "effective_due_on"], name="dsr_state_due_idx"),
            models.Index(fields=["request_type", "closed_at"], name="dsr_type_closed_idx"),
            # The search box's account ID (worklist.search: reference OR account ID, each indexed).
            models.Index(fields=["account_id"], condition=~Q(account_id=""), name="dsr_account_id_idx"),
            # The staff list: each order alone and after each filter's equality (LIST_ORDER_INDEXES), so a
            # first page reads its 50 rows from an index instead of sorting every match (issue 19).
            *LIST_ORDER_INDEXES,
        ]

    def __str__(self):
        return self.reference

    def __repr__(self):
        # Never the name or email, even in a debugger or a traceback's locals.
        return f"<RightsRequest {self.reference} {self.request_type} {self.state}>"

    def apply_due_dates(self):
        """Set the stored due dates from receipt, regime, completed holds and extension; does not save.

        Returns the names of the fields it set, for ``save(update_fields=...)``. The services call it on
        receipt and whenever one of those inputs changes; lists, filters and the digest read only the
        stored columns. The counting rules themselves are ``deadlines``'.
        """
        received_on = timezone.localdate(self.received_at)
        policy = deadlines.policy_due_date(
            received_on, extra_working_days=self.hold_working_days + self.extension_working_days
        )
        # hold_calendar_days counts only holds whose reason stops the legal clock; statutory_due_date applies
        # them under GDPR / UK GDPR only (under CCPA the 45 days run from receipt) and caps CCPA at day 90.
        statutory = deadlines.statutory_due_date(
            received_on,
            regime=self.regime,
            extra_calendar_days=self.extension_calendar_days,
            hold_calendar_days=self.hold_calendar_days,
        )
        self.policy_due_on = policy
        self.statutory_due_on = statutory
        self.effective_due_on = min(policy, statutory)
        return ["policy_due_on", "statutory_due_on", "effective_due_on"]


class RequestEvent(models.Model):
    """One entry in a request's history: a state change, or a note with from_state == to_state.

    Public events make up the timeline on the requester's status page; the rest are for staff only.
    """

    class ActorKind(models.TextChoices):
        REQUESTER = "requester", _("Requester")
        STAFF = "staff", _("Staff")
        SYSTEM = "system", _("System")

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(
        _("from state"), max_length=20, choices=RightsRequest.State.choices, blank=True
    )
    to_state = models.CharField(_("to state"), max_length=20, choices=RightsRequest.State.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_kind = models.CharField(_("actor kind"), max_length=20, choices=ActorKind.choices)
    note = models.TextField(_("note"), blank=True)
    public = models.BooleanField(_("shown to the requester"), default=False)
    created_at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("request event")
        verbose_name_plural = _("request events")
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(actor__isnull=True) | Q(actor_kind="staff"), name="dsr_event_actor_is_staff"
            ),
        ]

    def __str__(self):
        return f"{self.from_state or '-'} -> {self.to_state}"


class IdentityStep(models.TextChoices):
    """The identity-proof steps of the design."""

    EMAIL = "email", _("Email control")
    ACCOUNT = "account", _("Atlassian account")
    DOCUMENT = "document", _("Staff document check")
    # Only for a request made by an authorized agent, on top of the person's own proof (CCPA regs §7063).
    AGENT_PERMISSION = "agent_permission", _("Authorized agent's permission")


class CheckOutcome(models.TextChoices):
    """The result of one identity-proof step."""

    PASSED = "passed", _("Passed")
    FAILED = "failed", _("Failed")


class IdentityCheck(models.Model):
    """The outcome of one identity-proof step: who checked, how, when, and what they concluded."""

    Step = IdentityStep
    Outcome = CheckOutcome

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="identity_checks")
    step = models.CharField(_("step"), max_length=20, choices=Step.choices)
    method = models.CharField(_("method"), max_length=200)
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    note = models.TextField(_("note"), blank=True)
    checked_at = models.DateTimeField(_("checked at"), auto_now_add=True)

    class Meta:
        verbose_name = _("identity check")
        verbose_name_plural = _("identity checks")
        ordering = ["checked_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(step__in=IdentityStep.values), name="dsr_check_step_valid"),
            models.CheckConstraint(
                condition=Q(outcome__in=CheckOutcome.values), name="dsr_check_outcome_valid"
            ),
            # A staff document check names the staff member who made it.
            models.CheckConstraint(
                condition=~Q(step="document") | Q(actor__isnull=False), name="dsr_document_check_has_actor"
            ),
            # So does the check of an agent's written permission.
            models.CheckConstraint(
                condition=~Q(step="agent_permission") | Q(actor__isnull=False),
                name="dsr_agent_check_has_actor",
            ),
        ]

    def __str__(self):
        return f"{self.step}: {self.outcome}"


class DocumentKind(models.TextChoices):
    """What an uploaded document is meant to prove."""

    IDENTITY = "identity", _("Identity document")
    AGENT_PERMISSION = "agent_permission", _("Authorized agent's written permission")


class IdentityDocument(models.Model):
    """A document for a staff check; deleted once staff record their decision on it.

    Either the requester's identity document (uploaded from the status page), or the written permission
    an authorized agent gave with a request staff logged. The bytes are kept base64-encoded inside an
    encrypted text field, so they are never on disk or in the database in the clear, and the portal
    never serves them back to the public.
    """

    Kind = DocumentKind

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="identity_documents")
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.IDENTITY)
    content = EncryptedTextField(_("content (encrypted, base64)"))
    content_type = models.CharField(_("content type"), max_length=50)
    size = models.PositiveIntegerField(_("size in bytes"))
    uploaded_at = models.DateTimeField(_("uploaded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("identity document")
        verbose_name_plural = _("identity documents")
        ordering = ["uploaded_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(content_type__in=["application/pdf", "image/png", "image/jpeg"]),
                name="dsr_document_type_allowed",
            ),
            models.CheckConstraint(condition=Q(kind__in=DocumentKind.values), name="dsr_document_kind_valid"),
        ]

    def __str__(self):
        return f"{self.content_type}, {self.size} bytes"


class AccountProofCode(models.Model):
    """A one-time code the requester enters inside the Connect app to bind their Atlassian account."""

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="account_codes")
    code_hash = models.CharField(_("code hash"), max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires at"))
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("account proof code")
        verbose_name_plural = _("account proof codes")
        ordering = ["-created_at"]

    def __str__(self):
        return f"code for {self.request_id}"


class StaffQuestion(models.Model):
    """A question staff put to the requester, and the requester's answer from the status page."""

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="questions")
    question = EncryptedTextField(_("question"))
    asked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    asked_at = models.DateTimeField(_("asked at"), auto_now_add=True)
    answer = EncryptedTextField(_("answer"), blank=True)
    answered_at = models.DateTimeField(_("answered at"), null=True, blank=True)

    class Meta:
        verbose_name = _("question to the requester")
        verbose_name_plural = _("questions to the requester")
        ordering = ["asked_at", "id"]

    def __str__(self):
        return f"question {self.pk} on {self.request_id}"


class EmailStatus(models.TextChoices):
    """Where an outbound email stands."""

    PENDING = "pending", _("Pending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed (gave up)")


class OutboundEmail(models.Model):
    """An email to a requester, rendered when queued and sent by a task that retries.

    Queuing inside the transaction that changes the request means a failed send never blocks or loses
    the request; ``send_pending_emails`` sweeps what the task could not send. Bodies hold links with
    secrets, so they are encrypted and cleared once the message is sent.
    """

    Status = EmailStatus

    request = models.ForeignKey(
        RightsRequest, on_delete=models.CASCADE, null=True, blank=True, related_name="emails"
    )
    event = models.CharField(_("event"), max_length=50)
    to = EncryptedEmailField(_("to"))
    subject = models.CharField(_("subject"), max_length=200)
    body_text = EncryptedTextField(_("plain-text body"), blank=True)
    body_html = EncryptedTextField(_("HTML body"), blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_error = models.CharField(_("last error"), max_length=200, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        verbose_name = _("outbound email")
        verbose_name_plural = _("outbound emails")
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=EmailStatus.values), name="dsr_email_status_valid"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self):
        return f"{self.event} ({self.status})"


# --- Fulfilment --------------------------------------------------------------------------------------


class ProcessingActivity(models.Model):
    """One entry of the processing register (GDPR Art. 30), kept by the privacy admin in admin.

    The answer to a *processing* request and the README of every export are generated from these rows,
    so what the requester reads is what staff keep current (Art. 15(1)(a)-(h)).
    """

    name = models.CharField(_("name"), max_length=200, unique=True)
    purposes = models.TextField(_("purposes of the processing"))
    data_categories = models.TextField(_("categories of personal data"))
    legal_basis = models.TextField(_("legal basis"))
    recipients = models.TextField(_("recipients or categories of recipients"), blank=True)
    retention = models.TextField(_("how long the data is kept"))
    source = models.TextField(_("where the data comes from"), blank=True)
    transfers = models.TextField(_("transfers outside the UK/EEA and safeguards"), blank=True)
    automated_decisions = models.TextField(
        _("automated decision-making, including profiling"),
        blank=True,
        help_text=_("Its logic and consequences (Art. 15(1)(h)); leave empty when there is none."),
    )
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("processing activity")
        verbose_name_plural = _("processing register")
        ordering = ["position", "name"]

    def __str__(self):
        return self.name


class RunStatus(models.TextChoices):
    """Where a fulfilment run stands."""

    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed: back to staff")


class FulfilmentRun(models.Model):
    """The progress of carrying out one request: which steps are done, attempts, the last error.

    Each step is recorded as done in the same transaction as its effect (an email queued, an erasure
    made, an export published), so a job that dies between steps is resumed from the first step not
    done, and a rerun never repeats a finished one. ``heartbeat_at`` moves while a long step works, so
    ``dsr_resume_fulfilment`` can tell a dead worker from a busy one.
    """

    Status = RunStatus

    request = models.OneToOneField(RightsRequest, on_delete=models.CASCADE, related_name="fulfilment_run")
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.RUNNING)
    # {"step name": {"done_at": iso time, ...result}}; a step absent from the dict is still to do.
    steps = models.JSONField(_("steps done"), default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    failures = models.PositiveSmallIntegerField(_("failures"), default=0)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    heartbeat_at = models.DateTimeField(_("last sign of life"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("fulfilment run")
        verbose_name_plural = _("fulfilment runs")
        constraints = [
            models.CheckConstraint(condition=Q(status__in=RunStatus.values), name="dsr_run_status_valid"),
        ]

    def __str__(self):
        return f"fulfilment of {self.request_id} ({self.status})"


class ExportKind(models.TextChoices):
    """What an export file holds."""

    ZIP = "zip", _("ZIP: README, data.json and one CSV per source")
    JSON = "json", _("Machine-readable JSON (transfer)")


class DataExport(models.Model):
    """An encrypted export file of a request's data, downloadable for a limited time.

    The file (``file_name`` in the export storage: EXPORT_STORAGE, or the folder EXPORT_DIR) is written
    encrypted frame by frame and never exists in plain text. A ZIP is downloaded from the status page
    after an emailed one-time code; a transfer's JSON through a one-time link of its own (only its hash
    is stored) sent to the requester or to the receiving organisation.
    """

    Kind = ExportKind

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="exports")
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    file_name = models.CharField(_("file name"), max_length=100, unique=True)
    size = models.PositiveBigIntegerField(_("size (plain, bytes)"), default=0)
    records = models.PositiveIntegerField(_("records"), default=0)
    sha256 = models.CharField(_("SHA-256 of the plain file"), max_length=64)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires at"))
    purged_at = models.DateTimeField(_("purged at"), null=True, blank=True)
    link_token_hash = models.CharField(
        _("link token hash"), max_length=64, unique=True, null=True, blank=True, editable=False
    )
    link_used_at = models.DateTimeField(_("link used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("data export")
        verbose_name_plural = _("data exports")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=ExportKind.values), name="dsr_export_kind_valid"),
            # One export of each kind per request: a rerun replaces the file under the same name.
            models.UniqueConstraint(fields=["request", "kind"], name="dsr_export_one_per_kind"),
        ]

    def __str__(self):
        return self.file_name


class DownloadCode(models.Model):
    """A one-time code emailed to the requester; entering it on the status page downloads the export."""

    export = models.ForeignKey(DataExport, on_delete=models.CASCADE, related_name="codes")
    code_hash = models.CharField(_("code hash"), max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires at"))
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("download code")
        verbose_name_plural = _("download codes")
        ordering = ["-created_at"]

    def __str__(self):
        return f"code for export {self.export_id}"


class ExportDownload(models.Model):
    """One download of an export: when, and through which channel (no IP address: not needed)."""

    class Channel(models.TextChoices):
        CODE = "code", _("Status page, after an emailed code")
        LINK = "link", _("One-time transfer link")

    export = models.ForeignKey(DataExport, on_delete=models.CASCADE, related_name="downloads")
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    downloaded_at = models.DateTimeField(_("downloaded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("export download")
        verbose_name_plural = _("export downloads")
        ordering = ["downloaded_at", "id"]

    def __str__(self):
        return f"{self.channel} at {self.downloaded_at:%Y-%m-%d %H:%M}"


class Rectification(models.Model):
    """A correction staff recorded for a *change* request: which provider, which field, the new value.

    Applied through the provider's ``rectify`` when the request is fulfilled; the requester is told
    what changed.
    """

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="rectifications")
    provider = models.CharField(_("provider"), max_length=50)
    field = models.CharField(_("field"), max_length=50)
    new_value = EncryptedTextField(_("new value"))
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(_("recorded at"), auto_now_add=True)
    applied_at = models.DateTimeField(_("applied at"), null=True, blank=True)

    class Meta:
        verbose_name = _("correction")
        verbose_name_plural = _("corrections")
        ordering = ["recorded_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "provider", "field"], name="dsr_rectification_once"),
        ]

    def __str__(self):
        return f"{self.provider}.{self.field}"
