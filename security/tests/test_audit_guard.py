"""The audit stays append-only against the application's own database role (SECURITY.md, "Security round
two", item 3), on PostgreSQL, with real roles and real connections.

Each test creates the roles docs/operations.md ("Database roles") describes: the web/worker role gets DML
only; the owner (which runs migrations) is a separate role. The attacks are run over a second connection
logged in as that role, and the roles are dropped again at the end.
"""

import io
import secrets
from datetime import timedelta

import psycopg2
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from security import audit_guard
from security.models import AccessAction, AccessEvent

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

# The web role's grants, as docs/operations.md gives them.
WEB_ROLE_GRANTS = """
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role};
"""


def _event(days_ago):
    return AccessEvent.objects.create(
        action=AccessAction.LOGIN,
        username="someone",
        created_at=timezone.now() - timedelta(days=days_ago),
    )


class Role:
    """A login role on the test database, dropped (with its privileges) by ``drop``."""

    def __init__(self, prefix):
        self.name = f"{prefix}_{secrets.token_hex(4)}"
        self.password = secrets.token_hex(16)
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {self.name} LOGIN PASSWORD %s", [self.password])
        self.connections = []

    def connect(self):
        """A new autocommit connection logged in as this role."""
        params = connection.settings_dict
        conn = psycopg2.connect(
            host=params["HOST"] or "127.0.0.1",
            port=params["PORT"] or 5432,
            dbname=params["NAME"],
            user=self.name,
            password=self.password,
        )
        conn.autocommit = True
        self.connections.append(conn)
        return conn

    def drop(self):
        for conn in self.connections:
            conn.close()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {self.name}")
            cursor.execute(f"DROP ROLE {self.name}")


@pytest.fixture
def web_role():
    role = Role("artemis_web_test")
    with connection.cursor() as cursor:
        cursor.execute(WEB_ROLE_GRANTS.format(database=connection.settings_dict["NAME"], role=role.name))
    yield role
    role.drop()


@pytest.fixture
def owner_role():
    """A non-superuser role that owns the audit table (as the owner credential does in production)."""
    role = Role("artemis_owner_test")
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'security_accessevent'")
        (previous,) = cursor.fetchone()
        cursor.execute(f"GRANT CONNECT ON DATABASE {connection.settings_dict['NAME']} TO {role.name}")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role.name}")
        cursor.execute(f"GRANT SELECT, INSERT, DELETE ON security_prunewindow TO {role.name}")
        cursor.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role.name}")
        cursor.execute(f"ALTER TABLE security_accessevent OWNER TO {role.name}")
    yield role
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE security_accessevent OWNER TO "{previous}"')
    role.drop()


def _run(conn, *statements):
    with conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def _refused(conn, *statements, match):
    """Run ``statements`` in one transaction; it must fail with ``match`` in the error, and roll back."""
    conn.autocommit = False
    try:
        with pytest.raises(psycopg2.Error, match=match):
            _run(conn, *statements)
    finally:
        conn.rollback()
        conn.autocommit = True


FUTURE_WINDOW = "INSERT INTO security_prunewindow (cutoff) VALUES ('9999-01-01')"


def test_attack_a_prune_window_in_the_future_no_longer_lets_the_app_role_empty_the_audit(web_role):
    recent, old = _event(days_ago=1), _event(days_ago=800)
    conn = web_role.connect()

    _refused(conn, FUTURE_WINDOW, "DELETE FROM security_accessevent", match="append-only")

    assert set(AccessEvent.objects.values_list("pk", flat=True)) == {recent.pk, old.pk}


def test_the_app_role_prunes_rows_older_than_the_retention_only(web_role, settings):
    days = audit_guard.retention_days_in_database(connection)
    assert days == settings.ACCESS_EVENT_RETENTION_DAYS
    recent, old = _event(days_ago=days - 1), _event(days_ago=days + 1)
    conn = web_role.connect()
    conn.autocommit = False
    _run(
        conn,
        FUTURE_WINDOW,
        f"DELETE FROM security_accessevent WHERE created_at < now() - interval '{days} days'",  # noqa: S608
        "DELETE FROM security_prunewindow",
    )
    conn.commit()
    assert list(AccessEvent.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not AccessEvent.objects.filter(pk=old.pk).exists()


def test_attack_truncate_by_the_app_role_is_refused_even_when_granted(web_role):
    _event(days_ago=1)
    conn = web_role.connect()
    _refused(conn, "TRUNCATE security_accessevent", match="permission denied")
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT TRUNCATE ON security_accessevent TO {web_role.name}")
    _refused(conn, "TRUNCATE security_accessevent", match="TRUNCATE refused")
    assert AccessEvent.objects.count() == 1


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TRIGGER security_accessevent_append_only ON security_accessevent",
        "DROP TRIGGER security_accessevent_no_truncate ON security_accessevent",
        "ALTER TABLE security_accessevent DISABLE TRIGGER ALL",
        "ALTER TABLE security_accessevent DISABLE TRIGGER security_accessevent_append_only",
        "DROP TABLE security_accessevent",
        "CREATE OR REPLACE FUNCTION security_accessevent_append_only() RETURNS trigger AS "
        "$$ BEGIN RETURN OLD; END; $$ LANGUAGE plpgsql",
    ],
)
def test_attack_the_app_role_cannot_drop_disable_or_replace_the_guard(web_role, statement):
    conn = web_role.connect()
    _refused(conn, statement, match="must be owner|permission denied")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'security_accessevent'::regclass "
            "AND NOT tgisinternal AND tgenabled <> 'D'"
        )
        assert cursor.fetchone()[0] == 2


def test_attack_the_table_owner_cannot_truncate_or_delete_recent_rows_either(owner_role):
    """The owner could drop the triggers (which is why the web role is not the owner), but the guard
    still stops the two one-statement attacks the review found."""
    recent = _event(days_ago=1)
    conn = owner_role.connect()
    _refused(conn, "TRUNCATE security_accessevent", match="TRUNCATE refused")
    _refused(conn, FUTURE_WINDOW, "DELETE FROM security_accessevent", match="append-only")
    assert list(AccessEvent.objects.values_list("pk", flat=True)) == [recent.pk]


def test_set_audit_retention_rewrites_the_guard_with_the_setting(settings):
    original = settings.ACCESS_EVENT_RETENTION_DAYS
    try:
        settings.ACCESS_EVENT_RETENTION_DAYS = 400
        out = io.StringIO()
        call_command("set_audit_retention", stdout=out)
        assert "400 days" in out.getvalue()
        assert audit_guard.retention_days_in_database(connection) == 400
    finally:
        settings.ACCESS_EVENT_RETENTION_DAYS = original
        call_command("set_audit_retention", stdout=io.StringIO())
    assert audit_guard.retention_days_in_database(connection) == original
