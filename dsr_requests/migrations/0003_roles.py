"""Created the staff role groups: reviewer, approver, privacy admin.

The groups are now created and kept in sync by dsr_requests' post_migrate handler (roles.sync_role_groups,
connected in DsrRequestsConfig.ready) after every migrate, so no migration imports live code; this
migration stays, as a no-op, so the graph of migrations is unchanged.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("dsr_requests", "0002_staff_workflow"),
    ]

    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
