"""What every app's admin shares."""


class ReadOnlyAdminMixin:
    """An admin (or inline) that only shows rows: no add, change or delete through the admin's forms.

    Rows here change through services (workflow buttons and actions call them), through Atlassian's
    lifecycle calls, or never (the audit). Works for ``ModelAdmin`` and inlines alike (``obj`` optional).
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
