"""Staff roles for rights requests, as Django groups of permissions.

The groups are created and kept in step with this module by a ``post_migrate`` handler
(``sync_after_migrate``, connected in ``DsrRequestsConfig.ready``) after every ``migrate``, so a new
permission reaches its roles without a migration importing live code. Services check the permissions
themselves, so a role is enforced even where a template forgets to hide a button.
"""

from dsr_requests import staff_actions

REVIEWER = "Reviewer"
APPROVER = "Approver"
PRIVACY_ADMIN = "Privacy admin"

# What a role may see and do beyond the staff actions on a request; the actions' permissions come from
# the staff-actions registry (each action names the lowest role that takes it).
_REVIEWER_READS = (
    "view_rightsrequest",
    "view_requestevent",
    "view_identitycheck",
    "view_staffquestion",
    "view_personal_data",
    "view_identity_document",
    "log_request",
)
_REVIEWER_PERMISSIONS = tuple(
    dict.fromkeys((*_REVIEWER_READS, *staff_actions.permissions_of(staff_actions.REVIEWER)))
)
_APPROVER_PERMISSIONS = tuple(
    dict.fromkeys((*_REVIEWER_PERMISSIONS, *staff_actions.permissions_of(staff_actions.APPROVER)))
)

# codenames of the dsr_requests app; None means every permission the app has.
ROLE_PERMISSIONS = {
    REVIEWER: _REVIEWER_PERMISSIONS,
    APPROVER: _APPROVER_PERMISSIONS,
    PRIVACY_ADMIN: None,
}
# Permissions of other apps, as "app_label.codename"; given once the app's migration has created them
# (the post_migrate sync runs after every migrate, so after theirs too).
OTHER_APP_PERMISSIONS = {
    # The privacy admin runs everything: the audit, and the Connect registry (view, block) and its reports.
    PRIVACY_ADMIN: (
        "security.view_accessevent",
        "registrations.view_registration",
        "registrations.change_registration",
        "registrations.view_usagecount",
        "registrations.view_personaldatareport",
        "registrations.view_erasureledgerentry",
    ),
}


def _declared_codenames():
    """Every permission codename the app's current models declare (defaults and Meta.permissions)."""
    from django.apps import apps as live_apps
    from django.contrib.auth.management import _get_all_permissions

    return {
        codename
        for model in live_apps.get_app_config("dsr_requests").get_models()
        for codename, _name in _get_all_permissions(model._meta)
    }


def sync_role_groups(apps):
    """Create the role groups and give each exactly its permissions (``apps``: a migration's registry)."""
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after migrations; the groups need them now.
    for app_config in apps.get_app_configs():
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True  # a migration's app stubs have none
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = models_module

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    app_permissions = permission_model.objects.filter(content_type__app_label="dsr_requests")
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _created = group_model.objects.get_or_create(name=name)
        wanted = app_permissions if codenames is None else app_permissions.filter(codename__in=codenames)
        if codenames is not None and wanted.count() != len(codenames):
            # A permission a later migration adds is skipped now (that migration syncs again);
            # a name no model of the app declares is a typo.
            missing = set(codenames) - set(wanted.values_list("codename", flat=True))
            unknown = missing - _declared_codenames()
            if unknown:
                raise RuntimeError(f"role {name!r} names unknown permissions: {sorted(unknown)}")
        others = permission_model.objects.none()
        for label in OTHER_APP_PERMISSIONS.get(name, ()):
            app_label, codename = label.split(".")
            others |= permission_model.objects.filter(content_type__app_label=app_label, codename=codename)
        group.permissions.set([*wanted, *others])


def sync_after_migrate(sender, *, apps=None, **kwargs):
    """``post_migrate`` receiver: sync the role groups once every migration has run (``apps``: the
    migrated state's registry, as a data migration would see it; ``flush`` sends none, so the live one)."""
    from django.apps import apps as live_apps

    sync_role_groups(apps or live_apps)
