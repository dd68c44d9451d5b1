"""Two audit actions for the enrolment period: a refused enrolment, and a two-factor reset.

The check constraint on ``action`` changes with them. On SQLite that rebuilds the table, and a rebuilt
table has lost its triggers, so the append-only triggers of 0002 are created again at the end
(PostgreSQL alters the constraint in place and keeps its trigger).
"""

import importlib

from django.conf import settings
from django.db import migrations, models

_triggers = importlib.import_module("security.migrations.0002_append_only_trigger")


def _recreate_sqlite_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for statement in _triggers.SQLITE_BACKWARD + _triggers.SQLITE_FORWARD:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('security', '0003_privacy_admin_reads_audit'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='accessevent',
            name='security_access_action_valid',
        ),
        migrations.AlterField(
            model_name='accessevent',
            name='action',
            field=models.CharField(choices=[('login', 'Logged in (password)'), ('logout', 'Logged out'), ('login_failed', 'Failed login'), ('locked_out', 'Locked out'), ('otp_verified', 'Second factor verified (authenticator)'), ('otp_failed', 'Second factor refused'), ('otp_enrolled', 'Authenticator enrolled'), ('otp_enrol_refused', 'Enrolment refused (set-up period over)'), ('otp_reset', 'Two-factor reset (a new enrolment may start)'), ('backup_code_used', 'Backup code used'), ('view_personal_data', 'Viewed personal data'), ('transition', 'Staff action on a request'), ('download_document', 'Downloaded an identity document'), ('download_export', 'Downloaded an export')], max_length=30, verbose_name='action'),
        ),
        migrations.AddConstraint(
            model_name='accessevent',
            constraint=models.CheckConstraint(condition=models.Q(('action__in', ['login', 'logout', 'login_failed', 'locked_out', 'otp_verified', 'otp_failed', 'otp_enrolled', 'otp_enrol_refused', 'otp_reset', 'backup_code_used', 'view_personal_data', 'transition', 'download_document', 'download_export'])), name='security_access_action_valid'),
        ),
        migrations.RunPython(_recreate_sqlite_triggers, migrations.RunPython.noop),
    ]
