"""Admin pages beside the rights-request list: "Log a request" and the yearly request metrics.

Hooked into ``RightsRequestAdmin.get_urls`` by ``urls(model_admin)``. Like the rest of the admin, the
pages only parse input and call services (``staff_intake.log_request``) or read (``metrics.yearly``).
"""

from datetime import datetime, time

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_post_parameters

from dsr_requests import metrics, selectors, services, staff_intake
from dsr_requests.forms import RightsRequestForm, read_document
from security import audit
from security.models import AccessAction

LOG_PERMISSION = "dsr_requests.log_request"
METRICS_PERMISSION = "dsr_requests.export_request_log"
# Room for the form's text fields around the largest acceptable file (as the public upload allows).
UPLOAD_BODY_SLACK = 64 * 1024


class LogRequestForm(RightsRequestForm):
    """The public form's fields, worded for staff, plus channel, date received and the agent section."""

    website = None  # the honeypot: staff are not bots

    channel = forms.ChoiceField(
        label=_("How did the request reach us?"),
        choices=[(channel.value, channel.label) for channel in staff_intake.LOGGED_CHANNELS],
    )
    received_on = forms.DateField(
        label=_("Date received"),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    received_time = forms.TimeField(
        label=_("Time received (optional)"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}),
        help_text=_("Leave empty if not known; the deadlines count in days."),
    )
    by_agent = forms.BooleanField(
        label=_("Made by an authorized agent on the person's behalf"),
        required=False,
        help_text=_(
            "The person still confirms their own email address and proves their identity themselves; "
            "you check the agent's written permission on the request's page. The agent is sent nothing."
        ),
    )
    agent_name = forms.CharField(label=_("Agent's name"), max_length=200, required=False)
    agent_email = forms.EmailField(
        label=_("Agent's email address (optional)"), max_length=254, required=False
    )
    agent_permission = forms.FileField(
        label=_("Agent's written permission (PDF, PNG or JPEG)"),
        required=False,
        help_text=_("Stored encrypted and deleted when you record your decision on it."),
    )

    AGENT_FIELDS = ("agent_name", "agent_email", "agent_permission")
    SECTIONS = (
        (_("How and when it reached us"), ("channel", "received_on", "received_time")),
        (
            _("The request"),
            (
                "request_type",
                "name",
                "email",
                "country",
                "concerns",
                "site_url",
                "details",
                "transfer_to",
                "transfer_email",
            ),
        ),
        (_("Made by an authorized agent"), ("by_agent", *AGENT_FIELDS)),
    )
    field_order = [name for _title, names in SECTIONS for name in names]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        staff_wording = {
            "request_type": _("What does the person ask us to do?"),
            "name": _("The person's name"),
            "email": _("The person's email address"),
            "country": _("Where does the person live?"),
            "site_url": _("Atlassian site (optional)"),
            "details": _("Details (optional)"),
        }
        for name, label in staff_wording.items():
            self.fields[name].label = label
        self.fields["email"].help_text = _(
            "The address of the person the data is about, never the agent's: the confirmation link and "
            "the status page go there, and they confirm it themselves."
        )
        self.fields["received_on"].help_text = _(
            "The day the email, letter or call reached us, not the day you log it: it starts every "
            "deadline. Not in the future, and not more than %(months)d months ago."
        ) % {"months": staff_intake.MAX_RECEIVED_AGE_MONTHS}
        self.fields["details"].help_text = _(
            "What they asked, in their words where possible; no more personal data than the request needs."
        )
        self.fields["request_type"].widget = forms.Select(choices=self.fields["request_type"].choices)

    def sections(self):
        """(title, bound fields) per fieldset of the page."""
        return [(title, [self[name] for name in names]) for title, names in self.SECTIONS]

    def clean_received_on(self):
        received_on = self.cleaned_data["received_on"]
        today = timezone.localdate()
        if received_on > today:
            raise forms.ValidationError(_("The date received cannot be in the future."))
        earliest = staff_intake.earliest_received_on(today)
        if received_on < earliest:
            raise forms.ValidationError(
                _(
                    "The date received cannot be more than %(months)d months ago (before %(date)s). Check "
                    "the date; a request older than that needs the privacy lead, not the log."
                )
                % {"months": staff_intake.MAX_RECEIVED_AGE_MONTHS, "date": earliest.isoformat()}
            )
        return received_on

    def clean_agent_permission(self):
        upload = self.cleaned_data.get("agent_permission")
        if not upload:
            return None
        content, content_type = read_document(upload)
        return staff_intake.AgentPermission(content=content, content_type=content_type)

    def clean(self):
        data = super().clean()
        received_on = data.get("received_on")
        if received_on is not None:
            moment = timezone.make_aware(datetime.combine(received_on, data.get("received_time") or time.min))
            try:
                staff_intake.check_received_at(moment)
            except services.ActionRefused as exc:
                self.add_error("received_time", str(exc))
            else:
                data["received_at"] = moment
        if data.get("by_agent"):
            if not (data.get("agent_name") or "").strip():
                self.add_error("agent_name", _("Give the agent's name."))
            if not data.get("agent_permission") and "agent_permission" not in self.errors:
                self.add_error(
                    "agent_permission",
                    _("Upload the agent's written permission: an agent's request needs it."),
                )
            email, agent_email = data.get("email"), data.get("agent_email")
            if email and agent_email and email.strip().lower() == agent_email.strip().lower():
                self.add_error(
                    "email",
                    _("This is the agent's address. Give the person's own address: we write only to them."),
                )
        elif any(data.get(name) for name in self.AGENT_FIELDS) or "agent_permission" in self.errors:
            self.add_error(
                "by_agent",
                _("Tick this box for a request made by an authorized agent, or clear the agent's details."),
            )
        return data


def _too_large(request):
    """Whether the declared body is too large to hold an acceptable file (checked before reading it)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    return declared > settings.DSR_UPLOAD_MAX_BYTES + UPLOAD_BODY_SLACK


def _context(request, model_admin, **extra):
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        **extra,
    }


@sensitive_post_parameters(
    "name", "email", "details", "site_url", "transfer_email", "agent_name", "agent_email"
)
def log_request_view(request, model_admin):
    """Log a request received by email, post or phone; the person is emailed as for a web request."""
    if not request.user.has_perm(LOG_PERMISSION):
        raise PermissionDenied
    title = _("Log a request received by email, post or phone")
    if request.method == "POST" and _too_large(request):
        # Not parsed at all: a body this large cannot hold an acceptable file.
        form = LogRequestForm()
        error = _("The file is too large; the limit is %(limit)s. Nothing was stored.") % {
            "limit": filesizeformat(settings.DSR_UPLOAD_MAX_BYTES)
        }
        context = _context(request, model_admin, title=title, form=form, error=error)
        return TemplateResponse(
            request, "admin/dsr_requests/rightsrequest/log_request.html", context, status=413
        )
    form = LogRequestForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        by_agent = data["by_agent"]
        try:
            rights_request = staff_intake.log_request(
                actor=request.user,
                request_type=data["request_type"],
                name=data["name"],
                email=data["email"],
                channel=data["channel"],
                received_at=data["received_at"],
                details=data["details"],
                site_url=data["site_url"],
                concerns=data["concerns"],
                transfer_to=data["transfer_to"],
                transfer_email=data["transfer_email"],
                country=data["country"],
                agent_name=data["agent_name"] if by_agent else "",
                agent_email=data["agent_email"] if by_agent else "",
                agent_permission=data["agent_permission"] if by_agent else None,
            )
        except (services.ActionRefused, PermissionDenied) as exc:
            form.add_error(None, str(exc))
        else:
            audit.record(request, action=AccessAction.TRANSITION, obj=rights_request, detail="log request")
            _report_logged(model_admin, request, rights_request)
            return HttpResponseRedirect(
                reverse("admin:dsr_requests_rightsrequest_change", args=[rights_request.pk])
            )
    context = _context(request, model_admin, title=title, form=form)
    status = 400 if form.is_bound else 200
    return TemplateResponse(
        request, "admin/dsr_requests/rightsrequest/log_request.html", context, status=status
    )


def _report_logged(model_admin, request, rights_request):
    """Say what was stored and when it is due; a request logged late may already be overdue: say so."""
    model_admin.message_user(
        request,
        _(
            "Request %(reference)s logged as received on %(received)s. We emailed the person the link "
            "to confirm their address; it is due on %(due)s."
        )
        % {
            "reference": rights_request.reference,
            "received": timezone.localdate(rights_request.received_at).isoformat(),
            "due": rights_request.effective_due_on.isoformat(),
        },
        messages.SUCCESS,
    )
    shown = selectors.days_left(rights_request, timezone.localdate())
    if shown is None or shown.level not in ("overdue", "soon"):
        return
    if shown.level == "overdue":
        text = _("Counted from the date received, this request is already %(late)s: answer it first.")
        text %= {"late": shown.text}
    else:
        text = _("Counted from the date received, this request has %(left)s left.") % {"left": shown.text}
    model_admin.message_user(request, text, messages.WARNING)


def metrics_view(request, model_admin):
    """The yearly metrics of CCPA regs §7102(a) as a table, or (``format=csv``) as an audited download."""
    if not request.user.has_perm(METRICS_PERMISSION):
        raise PermissionDenied
    today = timezone.localdate()
    raw = request.GET.get("year")
    try:
        # By default the previous calendar year: the one the metrics are published for.
        year = metrics.parse_year(raw, today=today) if raw is not None else today.year - 1
    except metrics.BadYear as exc:
        context = _context(
            request,
            model_admin,
            title=_("Request metrics"),
            error=str(exc),
            years=range(today.year, metrics.FIRST_YEAR - 1, -1),
            year=None,
        )
        return TemplateResponse(request, "admin/dsr_requests/rightsrequest/metrics.html", context, status=400)
    rows = metrics.yearly(year)
    if request.GET.get("format") == "csv":
        audit.record(request, action=AccessAction.DOWNLOAD_EXPORT, detail=f"request metrics CSV {year}")
        response = HttpResponse(metrics.csv_text(year, rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="request-metrics-{year}.csv"'
        return response
    context = _context(
        request,
        model_admin,
        title=_("Request metrics for %(year)d") % {"year": year},
        year=year,
        rows=rows,
        years=range(today.year, metrics.FIRST_YEAR - 1, -1),
    )
    return TemplateResponse(request, "admin/dsr_requests/rightsrequest/metrics.html", context)


def urls(model_admin):
    """The pages' URL patterns, to put before the model admin's own (whose ``<object_id>/`` catches all)."""
    site = model_admin.admin_site
    prefix = f"{model_admin.opts.app_label}_{model_admin.opts.model_name}"

    def log_view(request):
        return log_request_view(request, model_admin)

    def metrics_page(request):
        return metrics_view(request, model_admin)

    return [
        path("log/", site.admin_view(log_view), name=f"{prefix}_log"),
        path("metrics/", site.admin_view(metrics_page), name=f"{prefix}_metrics"),
    ]
