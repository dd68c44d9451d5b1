"""The erasure ledger (keyed hashes of erased identifiers); the privacy admin role may read it."""

from django.db import migrations, models

# The role's group is created by dsr_requests (roles.py, which also lists this permission for later
# syncs); named here rather than imported, as registrations never imports rights requests.
PRIVACY_ADMIN = "Privacy admin"


def grant_view_to_privacy_admin(apps, schema_editor):
    """Give an existing privacy admin group the new view permission (a later role sync keeps it)."""
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("registrations")
    models_module = getattr(app_config, "models_module", None)
    app_config.models_module = models_module or True  # a migration's app stubs have none
    create_permissions(app_config, verbosity=0, apps=apps)
    app_config.models_module = models_module
    group = apps.get_model("auth", "Group").objects.filter(name=PRIVACY_ADMIN).first()
    if group is not None:
        permission = apps.get_model("auth", "Permission").objects.get(
            content_type__app_label="registrations", codename="view_erasureledgerentry"
        )
        group.permissions.add(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("registrations", "0005_privacy_admin_role"),
    ]

    operations = [
        migrations.CreateModel(
            name="ErasureLedgerEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("client_key", "site (client key)"),
                            ("account_id", "Atlassian account ID"),
                            ("email_hash", "email address (blind index)"),
                        ],
                        max_length=20,
                        verbose_name="kind",
                    ),
                ),
                ("key_hash", models.CharField(max_length=64, verbose_name="keyed hash")),
                ("key_id", models.CharField(max_length=16, verbose_name="key fingerprint")),
                ("erased_at", models.DateTimeField(verbose_name="erased at")),
                (
                    "pending",
                    models.BooleanField(
                        default=False,
                        help_text="The site's record stays until the app is uninstalled there, then it is deleted.",
                        verbose_name="pending (app still installed)",
                    ),
                ),
                ("reference", models.CharField(blank=True, max_length=40, verbose_name="erased for")),
            ],
            options={
                "verbose_name": "erasure ledger entry",
                "verbose_name_plural": "erasure ledger",
                "ordering": ["-erased_at"],
                "indexes": [models.Index(fields=["reference"], name="erasureledger_reference")],
                "constraints": [
                    models.UniqueConstraint(fields=("kind", "key_hash"), name="erasureledger_kind_hash_unique"),
                    models.CheckConstraint(
                        condition=models.Q(("kind__in", ["client_key", "account_id", "email_hash"])),
                        name="erasureledger_kind_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("key_hash", ""), _negated=True), name="erasureledger_hash_set"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("pending", False), ("kind", "client_key"), _connector="OR"),
                        name="erasureledger_only_sites_pending",
                    ),
                ],
            },
        ),
        migrations.RunPython(grant_view_to_privacy_admin, migrations.RunPython.noop),
    ]
