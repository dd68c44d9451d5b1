"""The site erasure a deletion request left pending, shown on the request's admin page.

Kept apart from admin.py (one mixin, one field) so that page's other work does not touch it.
"""

from django.contrib import admin
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

from registrations import erasure_ledger


class SiteErasureAdminMixin:
    """Adds the read-only field ``site_erasure`` (put its name in the admin's fields)."""

    @admin.display(description=_("site erasure"))
    def site_erasure(self, obj):
        """Whether the site's installation record this request erased is gone, or what remains and why."""
        entry = erasure_ledger.site_erasure_for(reference=obj.reference)
        if entry is None:
            return "–"
        when = date_format(timezone.localtime(entry.erased_at), "DATETIME_FORMAT")
        if entry.pending:
            return _(
                "Pending since %(when)s: the site's installation record remains while our app is installed "
                "there, because Atlassian needs it to authenticate the site. It is deleted automatically "
                "when the app is uninstalled."
            ) % {"when": when}
        return _(
            "Done %(when)s: the site's installation record is deleted, and a restore of an older backup "
            "deletes it again."
        ) % {"when": when}
