"""Database triggers that make security_accessevent append-only, on PostgreSQL and on SQLite.

UPDATE is always refused. DELETE is refused unless the deleting transaction holds a row in
security_prunewindow whose cutoff is later than the row's created_at: ``AccessEvent.objects.prune``
creates that row, deletes, and removes it again inside one transaction, so other transactions never
see it (PostgreSQL) or cannot run meanwhile (SQLite's single writer). TRUNCATE is not covered (it fires
no row trigger); it needs the table owner, and Django's test flush on PostgreSQL relies on it.
"""

from django.db import migrations

MESSAGE = "security_accessevent is append-only"

POSTGRES_FORWARD = f"""
CREATE OR REPLACE FUNCTION security_accessevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM security_prunewindow WHERE OLD.created_at < cutoff
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '{MESSAGE} (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER security_accessevent_append_only
    BEFORE UPDATE OR DELETE ON security_accessevent
    FOR EACH ROW EXECUTE FUNCTION security_accessevent_append_only();
"""
POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS security_accessevent_append_only ON security_accessevent;
DROP FUNCTION IF EXISTS security_accessevent_append_only();
"""
SQLITE_FORWARD = [
    f"""CREATE TRIGGER security_accessevent_no_update BEFORE UPDATE ON security_accessevent
    BEGIN SELECT RAISE(ABORT, '{MESSAGE} (UPDATE refused)'); END;""",
    f"""CREATE TRIGGER security_accessevent_no_delete BEFORE DELETE ON security_accessevent
    WHEN NOT EXISTS (SELECT 1 FROM security_prunewindow WHERE OLD.created_at < cutoff)
    BEGIN SELECT RAISE(ABORT, '{MESSAGE} (DELETE refused)'); END;""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS security_accessevent_no_update;",
    "DROP TRIGGER IF EXISTS security_accessevent_no_delete;",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor, [])
        for statement in [statements] if isinstance(statements, str) else statements:
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("security", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD}),
            _run({"postgresql": POSTGRES_BACKWARD, "sqlite": SQLITE_BACKWARD}),
        ),
    ]
