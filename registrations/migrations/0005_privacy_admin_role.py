"""The privacy admin role may see the Connect registry, block tenants, and read the usage and reporting pages."""

from django.db import migrations


# Staff role groups are synced by dsr_requests' post_migrate handler (roles.sync_role_groups, connected in
# DsrRequestsConfig.ready) after every migrate, so no migration imports live code. This step, which
# used to sync them here, is kept as a no-op so the migration's operations stay in place.


class Migration(migrations.Migration):
    dependencies = [
        ("registrations", "0004_registration_blocked_at"),
        ("security", "0003_privacy_admin_reads_audit"),
    ]

    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
