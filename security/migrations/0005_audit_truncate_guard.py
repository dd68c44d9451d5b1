"""PostgreSQL: the audit's DELETE guard checks the retention (written in by the owner), and a BEFORE
TRUNCATE trigger refuses truncation (security/audit_guard.py says why). SQLite keeps 0002's triggers:
it has no roles, so whoever can write the file can do anything to it anyway.
"""

from django.conf import settings
from django.db import migrations

# Migration 0002's function, restored when this migration is reversed.
PREVIOUS_FUNCTION = """
CREATE OR REPLACE FUNCTION security_accessevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM security_prunewindow WHERE OLD.created_at < cutoff
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'security_accessevent is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from security.audit_guard import postgres_guard_sql

    for statement in postgres_guard_sql(settings.ACCESS_EVENT_RETENTION_DAYS):
        schema_editor.execute(statement, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP TRIGGER IF EXISTS security_accessevent_no_truncate ON security_accessevent;", params=None)
    schema_editor.execute("DROP FUNCTION IF EXISTS security_accessevent_no_truncate();", params=None)
    schema_editor.execute(PREVIOUS_FUNCTION, params=None)


class Migration(migrations.Migration):
    dependencies = [("security", "0004_enrolment_period_audit_actions")]

    operations = [migrations.RunPython(forward, backward)]
