"""Django admin for rights requests: where support staff run every request.

The admin never edits a request directly: every change is a button or an action that calls a service,
and a refusal (wrong state, missing reason, no permission, someone else acted first) comes back as a
message. Personal data is shown, decrypted, only to staff holding ``view_personal_data``.
"""

import logging
from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from artemis_portal.admin_mixins import ReadOnlyAdminMixin
from artemis_portal.paging import CappedCountPaginator
from dsr_requests import (
    admin_bulk,
    admin_intake,
    providers,
    request_log,
    selectors,
    services,
    staff_actions,
    worklist,
)
from dsr_requests.admin_site_erasure import SiteErasureAdminMixin
from dsr_requests.models import (
    Concerns,
    DataExport,
    EmailStatus,
    ExportDownload,
    FulfilmentRun,
    IdentityCheck,
    IdentityStep,
    ProcessingActivity,
    Rectification,
    RejectionGround,
    RequestEvent,
    RightsRequest,
    StaffQuestion,
)
from security import audit
from security.models import AccessAction

logger = logging.getLogger(__name__)
PERSONAL_FIELDS = RightsRequest.PERSONAL_FIELDS
REFUSALS = (services.InvalidTransition, services.ActionRefused, PermissionDenied)
PERSONAL_DATA_PERMISSION = "dsr_requests.view_personal_data"


class DueFilter(admin.SimpleListFilter):
    """Overdue, or due soon (within 5 working days, overdue included), by the effective (earlier) due date.

    Working days, not "this calendar week": on a Friday, a request due on Monday is due soon.
    """

    title = _("deadline")
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return [("overdue", _("Overdue")), ("soon", _("Due within 5 working days (overdue included)"))]

    def queryset(self, request, queryset):
        today = timezone.localdate()
        if self.value() == "overdue":
            return selectors.overdue(today, queryset)
        if self.value() == "soon":
            return worklist.due_soon(today, queryset)
        return queryset


class StateFilter(admin.SimpleListFilter):
    """The state, in the words staff use (the requester's wording is on their status page)."""

    title = _("state")
    parameter_name = "state__exact"

    def lookups(self, request, model_admin):
        return [(state.value, names.staff) for state, names in worklist.STATE_NAMES.items()]

    def queryset(self, request, queryset):
        return queryset.filter(state=self.value()) if self.value() else queryset


class OrderFilter(admin.SimpleListFilter):
    """The list's order: most urgent first (the default) or newest first; ``get_ordering`` reads it."""

    title = _("order")
    parameter_name = "order"

    def lookups(self, request, model_admin):
        return [("newest", _("Newest first"))]

    def queryset(self, request, queryset):
        return queryset

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": _("Most urgent first"),
        }
        yield from list(super().choices(changelist))[1:]


class AssigneeFilter(admin.SimpleListFilter):
    """Requests assigned to the person looking, or to nobody."""

    title = _("assignee")
    parameter_name = "assigned"

    def lookups(self, request, model_admin):
        return [("me", _("Assigned to me")), ("nobody", _("Unassigned"))]

    def queryset(self, request, queryset):
        if self.value() == "me":
            return queryset.filter(assignee=request.user)
        if self.value() == "nobody":
            return queryset.filter(assignee__isnull=True)
        return queryset


class IdentityCheckInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The identity-proof steps recorded so far: who, when, how, outcome."""

    model = IdentityCheck
    fields = ("step", "method", "outcome", "actor", "checked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False


class RequestEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The request's timeline, oldest first; public entries are what the requester sees."""

    model = RequestEvent
    verbose_name_plural = _("timeline")
    fields = ("created_at", "from_state", "to_state", "actor_kind", "actor", "public", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")


class StaffQuestionInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Questions put to the requester and their answers (personal data: only with ``view_personal_data``)."""

    model = StaffQuestion
    verbose_name_plural = _("questions to the requester and answers")
    fields = ("asked_at", "asked_by", "question", "answered_at", "answer")
    readonly_fields = fields
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("asked_by")


@admin.register(RightsRequest)
class RightsRequestAdmin(SiteErasureAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """List, search and run rights requests; edits only through the workflow services."""

    # Narrow enough for 1280 px beside the navigation and the filters; the change page has the rest.
    list_display = ("reference", "staff_type", "staff_state", "due", "assignee")
    list_select_related = ("assignee",)
    list_filter = (OrderFilter, StateFilter, "request_type", "regime", "channel", DueFilter, AssigneeFilter)
    # No date hierarchy: its distinct-years query read every row on each page. Every filter and the order
    # have an index (list_order.LIST_ORDER_INDEXES), and the count stops at 10,000 (CappedCountPaginator).
    search_fields = ("reference",)
    search_help_text = _(
        "A reference (with or without DSR-), a requester's exact email address, or an Atlassian account ID."
    )
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    inlines = (IdentityCheckInline, RequestEventInline)

    def get_inlines(self, request, obj):
        """The answers a requester wrote are personal data: shown with the personal fields, and audited."""
        if request.user.has_perm("dsr_requests.view_personal_data"):
            return (IdentityCheckInline, StaffQuestionInline, RequestEventInline)
        return self.inlines

    # The bulk actions of the staff-actions registry (staff_actions.ACTIONS entries with a bulk label).
    actions = tuple(admin_bulk.bulk_action(action) for action in staff_actions.BULK_ACTIONS)
    change_form_template = "admin/dsr_requests/rightsrequest/change_form.html"
    change_list_template = "admin/dsr_requests/rightsrequest/change_list.html"

    class Media:
        css = {"all": ["dsr_requests/admin.css"]}

    # --- what is shown -------------------------------------------------------------------------------

    def get_fields(self, request, obj=None):
        fields = [
            "reference",
            "request_type",
            "state",
            "held_from_state",
            "identity_outstanding",
            "site_scope",
            "site_erasure",
            "regime",
            "country",
            "concerns",
            "transfer_to",
            "channel",
            "by_agent",
            "received_at",
            "email_confirmed_at",
            "policy_due_on",
            "statutory_due_on",
            "effective_due_on",
            "which_date_applies",
            "days_left",
            "hold_reason",
            "hold_working_days",
            "hold_calendar_days",
            "extended_at",
            "extension_reason",
            "assignee",
            "approved_by",
            "erasure_approved_by",
            "rejection_ground",
            "rejection_reason",
            "closed_at",
            "fulfilment_progress",
            "email_delivery",
        ]
        if request.user.has_perm("dsr_requests.view_personal_data"):
            fields[1:1] = PERSONAL_FIELDS
        return fields

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description=_("due (the earlier date)"), ordering="effective_due_on")
    def due(self, obj):
        """The effective due date and how much time is left, or how late it is against each date."""
        if obj.effective_due_on is None:
            return "–"
        day = date_format(obj.effective_due_on, "j M Y")
        shown = selectors.days_left(obj, timezone.localdate())
        if shown is None:
            return day
        # Late against both dates: one labelled line each.
        lines = format_html_join(
            "",
            '<br><span class="dsr-due dsr-due-{}">{}</span>',
            ((shown.level, part) for part in shown.text.split("; ")),
        )
        return format_html("{}{}", day, lines)

    @admin.display(description=_("type"), ordering="request_type")
    def staff_type(self, obj):
        return worklist.TYPE_NAMES[obj.request_type]

    @admin.display(description=_("state"), ordering="state")
    def staff_state(self, obj):
        return worklist.staff_label(obj.state)

    def get_ordering(self, request):
        """Most urgent first (open requests by their earlier due date, then the rest), or newest first."""
        if request.GET.get(OrderFilter.parameter_name) == "newest":
            return worklist.NEWEST_FIRST
        return worklist.URGENT_FIRST

    @admin.display(description=_("identity proof still needed"))
    def identity_outstanding(self, obj):
        groups = services.outstanding_identity_steps(obj)
        if not groups:
            return _("none")
        labels = dict(IdentityStep.choices)
        return "; ".join(str(_(" or ").join(str(labels[step]) for step in group)) for group in groups)

    @admin.display(description=_("fulfilment job"))
    def fulfilment_progress(self, obj):
        """Where the background job stands, so staff need not open the run to see if it is moving."""
        run = FulfilmentRun.objects.filter(request=obj).first()
        if run is None:
            return "–"
        steps = services.fulfilment_steps(obj)
        done = [step for step in steps if step in run.steps]
        text = _(
            "%(status)s: %(done)d of %(total)d steps done; attempt %(attempts)d, %(failures)d failed"
        ) % {
            "status": run.get_status_display(),
            "done": len(done),
            "total": len(steps),
            "attempts": run.attempts,
            "failures": run.failures,
        }
        if run.last_error:
            text = f"{text}. " + str(_("Last error: %(error)s") % {"error": run.last_error})
        return format_html(
            '{} (<a href="{}">{}</a>)',
            text,
            reverse("admin:dsr_requests_fulfilmentrun_change", args=[run.pk]),
            _("details"),
        )

    @admin.display(description=_("site scope"))
    def site_scope(self, obj):
        """What a site-scoped request may reach, and the check Atlassian leaves to staff.

        Atlassian's Connect JWT says which account is signed in on which site, not whether that account is
        the site's admin (no Confluence Cloud API tells an app either), so staff must confirm it before a
        site's installation record is exported or erased.
        """
        if obj.concerns != Concerns.SITE:
            return "–"
        if not obj.site_client_key:
            return _("About a site, but no account has been proven inside a site yet.")
        return _(
            "Account proven inside %(site)s. Atlassian does not tell apps whether it is the site's admin: "
            "confirm that before approving, since the site's installation record will be exported or erased."
        ) % {"site": obj.verified_site_url}

    @admin.display(description=_("emails to the requester"))
    def email_delivery(self, obj):
        """Counts by status, and why the failed ones failed (the error's class only: never an address)."""
        rows = list(obj.emails.values_list("status", "last_error"))
        if not rows:
            return "–"
        labels = dict(EmailStatus.choices)
        counts = Counter(status for status, _error in rows)
        summary = ", ".join(
            f"{counts[status]} {labels[status]}" for status in EmailStatus.values if counts[status]
        )
        errors = sorted({error for status, error in rows if status == EmailStatus.FAILED and error})
        return f"{summary} ({', '.join(errors)})" if errors else summary

    @admin.display(description=_("which date applies"))
    def which_date_applies(self, obj):
        """Why the due date is the one it is: staff see both dates and which rule wins (the earlier)."""
        return selectors.due_date_explanation(obj, timezone.localdate()) or "–"

    @admin.display(description=_("days left"))
    def days_left(self, obj):
        shown = selectors.days_left(obj, timezone.localdate())
        if shown is None:
            return "–"
        return format_html('<span class="dsr-due dsr-due-{}">{}</span>', shown.level, shown.text)

    def get_search_results(self, request, queryset, search_term):
        """Exact lookups only (email through its blind index, reference, account ID): see worklist.search."""
        return worklist.search(queryset, search_term), False

    # --- buttons on the change page ------------------------------------------------------------------

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<int:object_id>/act/<str:action>/",
                self.admin_site.admin_view(self.act_view),
                name=f"{prefix}_act",
            ),
            path(
                "<int:object_id>/document/<int:document_id>/",
                self.admin_site.admin_view(self.document_view),
                name=f"{prefix}_document",
            ),
            path("dashboard/", self.admin_site.admin_view(self.dashboard_view), name=f"{prefix}_dashboard"),
            path("export-log/", self.admin_site.admin_view(self.export_view), name=f"{prefix}_export"),
            *admin_intake.urls(self),  # "Log a request" and the yearly metrics
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if obj is not None:
            extra_context["staff_actions"], extra_context["unavailable_actions"] = staff_actions.page_actions(
                obj, request.user
            )
            extra_context["closed_reason"] = staff_actions.closed_reason(obj)
            extra_context["month_choices"] = obj.regime in services.deadlines.MONTH_REGIMES
            extra_context["hold_reasons"] = services.deadlines.HoldReason.choices
            extra_context["days_late"] = services.days_past_statutory_date(obj)
            extra_context["statutory_due_now"] = services.statutory_due_now(obj)
            extra_context["late_actions"] = staff_actions.LATE_CONFIRMED
            extra_context["rejection_grounds"] = RejectionGround.choices
            extra_context["staff_users"] = (
                get_user_model().objects.filter(is_staff=True, is_active=True).order_by("username")
            )
            extra_context["regimes"] = RightsRequest.Regime.choices
            extra_context["identity_documents"] = (
                list(obj.identity_documents.only("pk", "kind", "content_type", "size", "uploaded_at"))
                if request.user.has_perm("dsr_requests.view_identity_document")
                else None
            )
        response = super().change_view(request, object_id, form_url, extra_context)
        if (
            obj is not None
            and response.status_code == 200
            and request.user.has_perm(PERSONAL_DATA_PERMISSION)
        ):
            # The page shows the requester's decrypted personal data: every such view is audited.
            audit.record(request, action=AccessAction.VIEW_PERSONAL_DATA, obj=obj)
        return response

    def document_view(self, request, object_id, document_id):
        """Download an identity document awaiting the staff decision (audited; never cached or rendered)."""
        obj = get_object_or_404(RightsRequest, pk=object_id)
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        try:
            document = services.open_identity_document(
                rights_request=obj, actor=request.user, document_id=document_id
            )
        except REFUSALS as exc:
            audit.record(
                request,
                action=AccessAction.DOWNLOAD_DOCUMENT,
                obj=obj,
                detail=f"identity document {document_id}",
                succeeded=False,
            )
            self.message_user(
                request, str(exc) or _("You do not have permission to do this."), messages.ERROR
            )
            return HttpResponseRedirect(reverse("admin:dsr_requests_rightsrequest_change", args=[obj.pk]))
        audit.record(
            request, action=AccessAction.DOWNLOAD_DOCUMENT, obj=obj, detail=f"identity document {document_id}"
        )
        response = HttpResponse(document.content, content_type=document.content_type)
        response["Content-Disposition"] = f'attachment; filename="{document.filename}"'
        response["Cache-Control"] = "no-store"
        response["X-Content-Type-Options"] = "nosniff"
        # Opened in a tab anyway, it runs nothing and loads nothing.
        response._csp_config = {"default-src": ["'none'"], "frame-ancestors": ["'none'"], "sandbox": [True]}
        return response

    def act_view(self, request, object_id, action):
        """Run one staff action from the change page's buttons, then go back to the page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = get_object_or_404(RightsRequest, pk=object_id)
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        data = staff_actions.ActionData.from_post(request.POST)
        if action not in staff_actions.BY_NAME:
            self.message_user(request, _("Unknown action."), messages.ERROR)
        else:
            try:
                admin_bulk.audited(
                    request,
                    obj,
                    action,
                    lambda: staff_actions.run(action, rights_request=obj, actor=request.user, data=data),
                )
            except REFUSALS as exc:
                self.message_user(
                    request, str(exc) or _("You do not have permission to do this."), messages.ERROR
                )
            except ValueError:
                self.message_user(request, _("That value is not valid here."), messages.ERROR)
            except IntegrityError:
                # A rule the database keeps (e.g. two different approvers of an erasure) that the service
                # did not catch first: the transaction rolled back, so say so rather than show a 500.
                logger.exception("staff action %s on request %s broke a database rule", action, obj.pk)
                self.message_user(
                    request,
                    _("That would break a rule of the workflow; nothing was changed."),
                    messages.ERROR,
                )
            else:
                self.message_user(request, _("Done: %(reference)s updated.") % {"reference": obj.reference})
        return HttpResponseRedirect(reverse("admin:dsr_requests_rightsrequest_change", args=[obj.pk]))

    # --- dashboard and request log -------------------------------------------------------------------

    def dashboard_view(self, request):
        """Open requests by state, deadlines, completion times and monthly volume."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Rights requests dashboard"),
            **selectors.dashboard(),
        }
        return TemplateResponse(request, "admin/dsr_requests/dashboard.html", context)

    def export_view(self, request):
        """The request log as CSV, for a regulator: no personal data beyond the reference."""
        if not request.user.has_perm("dsr_requests.export_request_log"):
            raise PermissionDenied
        audit.record(request, action=AccessAction.DOWNLOAD_EXPORT, detail="request log CSV")
        response = StreamingHttpResponse(request_log.csv_lines(), content_type="text/csv; charset=utf-8")
        stamp = timezone.localdate().isoformat()
        response["Content-Disposition"] = f'attachment; filename="request-log-{stamp}.csv"'
        return response

    def changelist_view(self, request, extra_context=None):
        extra_context = dict(extra_context or {})
        extra_context["can_export_log"] = request.user.has_perm("dsr_requests.export_request_log")
        return super().changelist_view(request, extra_context)


# --- Fulfilment ---------------------------------------------------------------------------------------


@admin.register(ProcessingActivity)
class ProcessingActivityAdmin(admin.ModelAdmin):
    """The processing register: kept by the privacy admin (model permissions), read by every export."""

    list_display = ("name", "legal_basis", "retention", "position")
    list_editable = ("position",)
    search_fields = ("name", "purposes", "data_categories")


@admin.register(FulfilmentRun)
class FulfilmentRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Where each fulfilment job stands: steps done, attempts, failures and the last error."""

    list_display = ("request", "status", "attempts", "failures", "started_at", "heartbeat_at", "finished_at")
    list_filter = ("status",)
    list_select_related = ("request",)
    fields = ("request", "status", "steps", "attempts", "failures", "last_error", "started_at", "finished_at")
    readonly_fields = fields


class ExportDownloadInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Every download of an export."""

    model = ExportDownload
    fields = ("downloaded_at", "channel")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(DataExport)
class DataExportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Export files (never their content): size, expiry, purge, and the download log."""

    list_display = ("request", "kind", "records", "size", "created_at", "expires_at", "purged_at")
    list_filter = ("kind",)
    list_select_related = ("request",)
    fields = ("request", "kind", "file_name", "records", "size", "sha256", "created_at", "expires_at")
    readonly_fields = (*fields, "purged_at", "link_used_at")
    inlines = (ExportDownloadInline,)


class RectificationForm(forms.ModelForm):
    """A correction: which source and field, and the corrected value."""

    source_field = forms.ChoiceField(label=_("source and field"))

    class Meta:
        model = Rectification
        fields = ("request", "new_value")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "request" not in self.fields:  # the read-only view of a recorded correction
            return
        self.fields["request"].queryset = RightsRequest.objects.filter(
            request_type=RightsRequest.Type.CHANGE, state__in=["in_review", "approved"]
        )
        self.fields["source_field"].choices = [
            (f"{p.key}:{name}", f"{p.title}: {name}")
            for p in providers.all_providers()
            for name in p.rectifiable_fields
        ]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("request") and cleaned.get("source_field"):
            provider, _sep, field = cleaned["source_field"].partition(":")
            try:
                services.check_rectification(
                    rights_request=cleaned["request"], provider=provider, field=field
                )
            except services.ActionRefused as exc:
                raise forms.ValidationError(str(exc)) from None
        return cleaned


@admin.register(Rectification)
class RectificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Record the corrections of a change request; the fulfilment job applies them and tells the requester.

    Values are personal data: listed only for staff who may see it; saving goes through the service.
    """

    form = RectificationForm
    list_display = ("request", "provider", "field", "recorded_by", "recorded_at", "applied_at")
    list_select_related = ("request", "recorded_by")

    def has_add_permission(self, request, obj=None):
        return request.user.has_perm("dsr_requests.fulfil_request")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        obj = self.get_object(request, object_id) if response.status_code == 200 else None
        if obj is not None:
            # The page shows the corrected value, decrypted: personal data.
            audit.record(request, action=AccessAction.VIEW_PERSONAL_DATA, obj=obj)
        return response

    def save_model(self, request, obj, form, change):
        provider, _sep, field = form.cleaned_data["source_field"].partition(":")
        try:
            saved = services.record_rectification(
                rights_request=form.cleaned_data["request"],
                actor=request.user,
                provider=provider,
                field=field,
                new_value=form.cleaned_data["new_value"],
            )
        except REFUSALS as exc:
            raise PermissionDenied(str(exc)) from exc
        obj.pk = saved.pk
        audit.record(request, action=AccessAction.TRANSITION, obj=saved, detail="record rectification")
