"""Admin: a read-only view of the tenant registry (never the secret) and the usage chart."""

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from artemis_portal.admin_mixins import ReadOnlyAdminMixin
from registrations import selectors, services
from registrations.models import ErasureLedgerEntry, ForgeInstallation, Registration, UsageCount

CHART_WIDTH, CHART_HEIGHT, BAR_GAP = 600, 160, 2


@admin.register(Registration)
class RegistrationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Staff can look tenants up and block or unblock one; records change only through lifecycle calls.

    Read-only: tenants are created by Atlassian's signed install only, and uninstall keeps the row
    (erasing a tenant's record is a rights-request fulfilment, not a click).

    ``shared_secret`` is in no list, form, search or filter, and the queryset defers it, so the admin
    never even decrypts it.
    """

    list_display = (
        "client_key",
        "state",
        "blocked",
        "platforms",
        "product_type",
        "base_url",
        "installed_at",
        "updated_at",
    )
    list_filter = ("state", ("blocked_at", admin.EmptyFieldListFilter), "product_type")
    search_fields = ("client_key", "base_url", "display_url")
    date_hierarchy = "installed_at"
    fields = (
        "client_key",
        "state",
        "product_type",
        "base_url",
        "display_url",
        "description",
        "service_entitlement_number",
        "plugins_version",
        "server_version",
        "oauth_client_id",
        "installed_at",
        "updated_at",
        "enabled_at",
        "disabled_at",
        "uninstalled_at",
        "blocked_at",
    )
    readonly_fields = fields
    actions = ["block", "unblock"]

    def get_queryset(self, request):
        """Never load the secret column; say in the same query whether the site has Forge too."""
        forge = ForgeInstallation.objects.filter(
            registration=OuterRef("pk"), state=ForgeInstallation.State.INSTALLED
        )
        return super().get_queryset(request).defer("shared_secret").annotate(has_forge=Exists(forge))

    @admin.display(description=_("platforms"))
    def platforms(self, obj):
        """The tenant's platforms: Connect (this row) and Forge when an installation of the site is linked."""
        return "Connect + Forge" if getattr(obj, "has_forge", False) else "Connect"

    @admin.display(boolean=True, description=_("blocked"))
    def blocked(self, obj):
        return obj.blocked_at is not None

    def has_block_permission(self, request):
        """Blocking needs the model's change permission (the admin itself stays read-only)."""
        return request.user.has_perm("registrations.change_registration")

    @admin.action(
        description=_("Block selected tenants (their requests are refused until unblocked)"),
        permissions=["block"],
    )
    def block(self, request, queryset):
        """Call the service for each selected tenant; Atlassian is not told."""
        changed = sum(
            services.block(registration=registration, actor=request.user) for registration in queryset
        )
        self.message_user(
            request,
            ngettext("%d tenant blocked.", "%d tenants blocked.", changed) % changed,
            messages.SUCCESS,
        )

    @admin.action(description=_("Unblock selected tenants"), permissions=["block"])
    def unblock(self, request, queryset):
        changed = sum(
            services.unblock(registration=registration, actor=request.user) for registration in queryset
        )
        self.message_user(
            request,
            ngettext("%d tenant unblocked.", "%d tenants unblocked.", changed) % changed,
            messages.SUCCESS,
        )


@admin.register(UsageCount)
class UsageCountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Anonymized uses per day and module, with a server-rendered chart of the last 30 days."""

    list_display = ("day", "module", "count")
    list_filter = ("module",)
    date_hierarchy = "day"
    change_list_template = "registrations/admin/usage_change_list.html"

    def changelist_view(self, request, extra_context=None):
        """Add the chart's bars (SVG geometry) and per-module totals to the usual list."""
        days = selectors.daily_usage(days=30)
        peak = max((total for _day, total in days), default=0) or 1
        step = CHART_WIDTH / len(days)
        bars = [
            {
                "day": day,
                "total": total,
                "x": round(index * step, 1),
                "width": round(step - BAR_GAP, 1),
                "height": round(total / peak * CHART_HEIGHT, 1),
                "y": round(CHART_HEIGHT - total / peak * CHART_HEIGHT, 1),
            }
            for index, (day, total) in enumerate(days)
        ]
        context = {
            "usage_bars": bars,
            "usage_peak": peak if any(total for _day, total in days) else 0,
            "usage_modules": selectors.module_usage(days=30),
            "chart_width": CHART_WIDTH,
            "chart_height": CHART_HEIGHT,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)


@admin.register(ErasureLedgerEntry)
class ErasureLedgerEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What data subjects' erasures removed, so a restored backup cannot bring it back: read-only.

    Entries are written by erasures and by the uninstall of a pending site, never here. The keyed hash
    is not shown: it tells a person nothing and is only matched by the code.
    """

    list_display = ("kind", "erased_at", "pending", "reference")
    list_filter = ("kind", "pending")
    search_fields = ("reference",)
    search_help_text = _("A rights request's reference (DSR-…).")
    date_hierarchy = "erased_at"
    fields = ("kind", "erased_at", "pending", "reference")
    readonly_fields = fields


# The Forge side of tenants (installations, refused-token counts): its own module, registered on import.
from registrations import forge_admin  # noqa: E402, F401
