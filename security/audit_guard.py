"""The PostgreSQL guard of the append-only audit (SECURITY.md, "Security round two", item 3).

Migration 0002's trigger let a DELETE through whenever the deleting transaction held a row in
``security_prunewindow``, a table the application's own role can write: an attacker with the app's
credentials inserted a window with a cutoff in the future and emptied the audit. ``TRUNCATE`` fired no
row trigger at all. This guard closes both:

* a DELETE passes only for rows older than ``now() - retention``, where the retention is a constant
  written into the function's body by its owner (migration 0005, or ``set_audit_retention`` after
  ``ACCESS_EVENT_RETENTION_DAYS`` changes). The application role cannot change it: replacing a function
  needs its ownership, and the web and worker processes run as a role that owns nothing (see
  docs/operations.md, "Database roles"). The prune window is still required too, so an ordinary DELETE
  of even old rows outside ``AccessEvent.objects.prune`` is refused.
* a ``BEFORE TRUNCATE`` trigger refuses truncation by anyone but a superuser (who can drop triggers
  anyway, and is what Django's test flush runs as).

``search_path`` is pinned on both functions, so a role that can create objects in another schema cannot
make them resolve ``security_prunewindow`` to a table of its own.
"""

MESSAGE = "security_accessevent is append-only"


def postgres_guard_sql(retention_days):
    """The statements that (re)create the guard with ``retention_days`` written in; run by the owner."""
    days = int(retention_days)
    if days < 1:
        raise ValueError("the audit retention must be at least one day")
    return [
        f"""
CREATE OR REPLACE FUNCTION security_accessevent_append_only() RETURNS trigger AS $$
BEGIN
    -- Retention: {days} days, written in by the owner (security/audit_guard.py).
    IF TG_OP = 'DELETE'
       AND OLD.created_at < now() - interval '{days} days'
       AND EXISTS (SELECT 1 FROM security_prunewindow WHERE OLD.created_at < cutoff) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '{MESSAGE} (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql SET search_path FROM CURRENT;
""",  # noqa: S608 (an int and a constant, no input)
        f"""
CREATE OR REPLACE FUNCTION security_accessevent_no_truncate() RETURNS trigger AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '{MESSAGE} (TRUNCATE refused)' USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql SET search_path FROM CURRENT;
""",  # noqa: S608 (an int and a constant, no input)
        "DROP TRIGGER IF EXISTS security_accessevent_no_truncate ON security_accessevent;",
        """
CREATE TRIGGER security_accessevent_no_truncate
    BEFORE TRUNCATE ON security_accessevent
    FOR EACH STATEMENT EXECUTE FUNCTION security_accessevent_no_truncate();
""",
    ]


def retention_days_in_database(connection):
    """The retention the PostgreSQL guard was written with, or None (not PostgreSQL, or no guard)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT substring(prosrc from 'Retention: ([0-9]+) days') FROM pg_catalog.pg_proc "
            "WHERE proname = 'security_accessevent_append_only'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] else None
