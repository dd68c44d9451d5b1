"""The privacy admin role may read (and export) the access audit."""

from django.db import migrations


def sync_roles(apps, schema_editor):
    from dsr_requests.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("security", "0002_append_only_trigger"),
        ("dsr_requests", "0006_identity_document_permission"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
