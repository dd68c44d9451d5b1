"""The privacy admin role may see the Connect registry, block tenants, and read the usage and reporting pages."""

from django.db import migrations


def sync_roles(apps, schema_editor):
    from dsr_requests.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("registrations", "0004_registration_blocked_at"),
        ("security", "0003_privacy_admin_reads_audit"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
