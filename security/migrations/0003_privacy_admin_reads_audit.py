"""The privacy admin role may read (and export) the access audit."""

from django.db import migrations


# Staff role groups are synced by dsr_requests' post_migrate handler (roles.sync_role_groups, connected in
# DsrRequestsConfig.ready) after every migrate, so no migration imports live code. This step, which
# used to sync them here, is kept as a no-op so the migration's operations stay in place.


class Migration(migrations.Migration):
    dependencies = [
        ("security", "0002_append_only_trigger"),
    ]

    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
