"""Create the staff role groups: reviewer, approver, privacy admin."""

from django.db import migrations


def create_groups(apps, schema_editor):
    from dsr_requests.roles import sync_role_groups

    sync_role_groups(apps)


def remove_groups(apps, schema_editor):
    from dsr_requests.roles import ROLE_PERMISSIONS

    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("dsr_requests", "0002_staff_workflow"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
