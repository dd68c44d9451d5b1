"""The audit in admin: list, filter, search and export as CSV; never add, change or delete."""

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from artemis_portal.admin_mixins import ReadOnlyAdminMixin
from security import audit, services
from security.models import AccessAction, AccessEvent


@admin.register(AccessEvent)
class AccessEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only audit of staff access; the CSV button exports exactly the filtered list."""

    list_display = (
        "created_at",
        "username",
        "action",
        "succeeded",
        "object_repr",
        "detail",
        "ip",
        "request_id",
    )
    list_filter = (
        "action",
        "succeeded",
        ("created_at", admin.DateFieldListFilter),
        ("user", admin.RelatedOnlyFieldListFilter),
        ("content_type", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("username", "object_repr", "=object_id", "=request_id")
    search_help_text = _("A username, an object reference (DSR-…), an object id or a request id.")
    date_hierarchy = "created_at"
    list_per_page = 100
    show_full_result_count = False
    fields = (
        "created_at",
        "user",
        "username",
        "action",
        "succeeded",
        "content_type",
        "object_id",
        "object_repr",
        "detail",
        "ip",
        "user_agent",
        "request_id",
    )
    readonly_fields = fields
    change_list_template = "admin/security/accessevent/change_list.html"

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("export/", self.admin_site.admin_view(self.export_view), name=f"{prefix}_export"),
            *super().get_urls(),
        ]

    def export_view(self, request):
        """The list as filtered and searched (same query string as the list), streamed as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest(_("These filters are not valid."))
        queryset = changelist.get_queryset(request)
        audit.record(request, action=AccessAction.DOWNLOAD_EXPORT, detail="access events CSV")
        response = StreamingHttpResponse(
            services.access_events_csv(queryset), content_type="text/csv; charset=utf-8"
        )
        stamp = timezone.localdate().isoformat()
        response["Content-Disposition"] = f'attachment; filename="access-events-{stamp}.csv"'
        response["Cache-Control"] = "no-store"
        return response
