"""Admin for the Forge side of tenants: installations (read-only) and refused-token counts per reason.

Imported by ``admin.py`` (Django discovers only that module). No secret exists on this side; the
installation rows hold identifiers of the site and app only.
"""

import datetime

from django.contrib import admin
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from artemis_portal.admin_mixins import ReadOnlyAdminMixin
from registrations.models import FitFailureCount, ForgeInstallation


@admin.register(ForgeInstallation)
class ForgeInstallationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Forge installations with the Connect registration of the same site; changed only by Forge's events."""

    list_display = ("site_url", "cloud_id", "state", "environment_type", "app_id", "connect", "installed_at")
    list_filter = ("state", "environment_type", ("registration", admin.EmptyFieldListFilter))
    search_fields = ("site_url", "cloud_id", "installation_id")
    list_select_related = ("registration",)
    fields = (
        "installation_id",
        "app_id",
        "environment_type",
        "environment_id",
        "cloud_id",
        "site_url",
        "app_version",
        "state",
        "registration",
        "installed_at",
        "upgraded_at",
        "uninstalled_at",
        "last_event_at",
        "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        """The linked registration without its secret column."""
        return super().get_queryset(request).defer("registration__shared_secret")

    @admin.display(description=_("Connect registration"), ordering="registration__client_key")
    def connect(self, obj):
        return obj.registration.client_key if obj.registration else "-"


@admin.register(FitFailureCount)
class FitFailureCountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Refused Forge invocation tokens per day and reason, with the 30-day total per reason on top."""

    list_display = ("day", "reason", "count")
    list_filter = ("reason",)
    date_hierarchy = "day"
    change_list_template = "registrations/admin/fit_failure_change_list.html"

    def changelist_view(self, request, extra_context=None):
        """Add the per-reason totals of the last 30 days (one grouped query)."""
        start = timezone.localdate() - datetime.timedelta(days=29)
        reasons = (
            FitFailureCount.objects.filter(day__gte=start)
            .values("reason")
            .annotate(total=Sum("count"))
            .order_by("-total", "reason")
        )
        context = {"fit_failure_reasons": list(reasons), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)
