"""Usage counts buffered in the real Redis and flushed to the daily rows exactly once (usage_counts).

The Connect hot path must not touch the database on a warm tenant cache; the flush must not lose or
double a count whichever process dies when: a web process right after counting (a real process killed
with SIGKILL), a flusher after claiming a batch, a flusher after committing it.
"""

import datetime
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from conftest import free_port
from registrations import services, usage_counts
from registrations.models import UsageCount, UsageFlush
from registrations.tests.conftest import REDIS_URL, request_token, run
from registrations.tests.factories import RegistrationFactory

ROOT = Path(__file__).resolve().parents[2]
PAGE = "/connect/identity-proof/"
DAY = datetime.date(2026, 3, 1)
pytestmark = [pytest.mark.django_db, pytest.mark.urls("registrations.tests.urls")]


def auth(token):
    return {"HTTP_AUTHORIZATION": f"JWT {token}"}


def counts():
    return {(row.day, row.module): row.count for row in UsageCount.objects.all()}


def buffered_keys(prefix):
    return sorted(
        key.decode() for key in redis.Redis.from_url(REDIS_URL).scan_iter(match=f"{prefix}:*usage*")
    )


# --- the request path ----------------------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_authenticated_connect_request_on_a_warm_cache_opens_no_database_connection(client, redis_cache):
    """Zero queries, and not even a connection: Django health-checks (CONN_HEALTH_CHECKS) only a
    connection that a request uses, so a request that never opens one costs no health check either.
    (SQLite's in-memory test database cannot be closed, so only PostgreSQL shows the connection part.)"""
    if connection.vendor != "postgresql":
        pytest.skip("an in-memory SQLite test database keeps its connection open")
    tenant = RegistrationFactory()
    assert client.get(PAGE, **auth(request_token(tenant, qsh="context-qsh"))).status_code == 200
    connection.close()
    response = client.get(PAGE, **auth(request_token(tenant, qsh="context-qsh")))
    assert response.status_code == 200
    assert tenant.base_url in response.content.decode()
    assert connection.connection is None
    assert UsageCount.objects.count() == 0  # counted in Redis, not yet flushed
    services.flush_usage_counts(actor="test")
    assert UsageCount.objects.get(module="identity-proof").count == 2


def test_authenticated_connect_request_on_a_warm_cache_makes_no_query(
    client, redis_cache, django_assert_num_queries
):
    tenant = RegistrationFactory()
    client.get(PAGE, **auth(request_token(tenant, qsh="context-qsh")))  # warms the tenant cache
    with django_assert_num_queries(0):
        response = client.get(PAGE, **auth(request_token(tenant, qsh="context-qsh")))
        client.get("/api/bare", **auth(request_token(tenant, url="/api/bare")))
    assert response.status_code == 200


def test_without_redis_each_use_is_one_upsert_as_before(client, django_assert_num_queries):
    tenant = RegistrationFactory()
    client.get(PAGE, **auth(request_token(tenant, qsh="context-qsh")))
    with django_assert_num_queries(1):
        client.get(PAGE, **auth(request_token(tenant, qsh="context-qsh")))
    assert not usage_counts.buffered()
    assert UsageCount.objects.get(module="identity-proof").count == 2


def test_a_use_is_written_to_the_database_when_redis_does_not_answer(caplog):
    # A real refused connection: nothing listens on that port.
    refused = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1},
        }
    }
    with override_settings(CACHES=refused):
        services.record_usage(module="page", day=DAY)
        services.record_usage(module="page", day=DAY)
    assert counts() == {(DAY, "page"): 2}
    assert "redis unavailable" in caplog.text


def test_a_dropped_redis_connection_loses_no_use_and_is_reopened(redis_cache):
    services.record_usage(module="page", day=DAY)
    host, port = usage_counts._held.connection._sock.getsockname()[:2]
    # Redis drops the request path's connection (a restart or a network blip looks the same).
    assert redis.Redis.from_url(REDIS_URL).client_kill(f"{host}:{port}")
    services.record_usage(module="page", day=DAY)  # fails on the dead connection: written to the database
    services.record_usage(module="page", day=DAY)  # a new connection
    services.flush_usage_counts(actor="test")
    assert counts() == {(DAY, "page"): 3}


def _wait_for(check, seconds=5):
    import time

    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)
    return check()


def test_a_counted_page_sends_its_use_first_and_reads_the_reply_when_it_ends(redis_cache):
    """Issue 19, item 1: the page renders while Redis applies the count, rather than after a round trip;
    the reply is read before the response leaves."""
    from django.core.cache import cache

    key = cache.make_key(usage_counts.DAY_KEY + timezone.localdate().isoformat())
    other = redis.Redis.from_url(REDIS_URL)
    with services.usage_counted(module="page"):
        assert usage_counts._held.pending is not None  # sent, its reply not read yet
        assert _wait_for(lambda: other.hget(key, "page") == b"1")  # Redis has it meanwhile
    assert usage_counts._held.pending is None


def test_a_page_that_fails_still_counts_its_use_and_reads_the_reply(redis_cache):
    with pytest.raises(RuntimeError), services.usage_counted(module="page"):
        raise RuntimeError("the view failed")
    assert usage_counts._held.pending is None
    services.record_usage(module="page")  # the same connection, the next reply: still in step
    services.flush_usage_counts(actor="test")
    assert counts() == {(timezone.localdate(), "page"): 2}


def test_a_counted_page_whose_reply_never_comes_writes_its_use_to_the_database(redis_cache, caplog):
    services.record_usage(module="page", day=DAY)
    host, port = usage_counts._held.connection._sock.getsockname()[:2]
    assert redis.Redis.from_url(REDIS_URL).client_kill(f"{host}:{port}")
    with services.usage_counted(module="page"):
        pass  # the command went to a closed connection: no reply
    assert counts() == {(timezone.localdate(), "page"): 1}
    assert "redis unavailable" in caplog.text
    with services.usage_counted(module="page"):  # a new connection
        pass
    services.flush_usage_counts(actor="test")
    assert counts() == {(DAY, "page"): 1, (timezone.localdate(), "page"): 2}


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Pacific/Kiritimati"])
def test_the_counted_day_is_the_local_date_across_midnight_and_when_the_clock_goes_back(settings, zone):
    """``today()`` keeps the local date until its day ends rather than working it out on every use."""
    import time_machine

    settings.TIME_ZONE = zone
    local = timezone.get_default_timezone()
    midnight = datetime.datetime(2026, 12, 7, tzinfo=local)
    for moment in (
        midnight - datetime.timedelta(microseconds=1),
        midnight,
        midnight + datetime.timedelta(hours=23, minutes=59),
        midnight - datetime.timedelta(days=3),  # a clock set back
        midnight + datetime.timedelta(days=1),
    ):
        with time_machine.travel(moment, tick=False):
            assert usage_counts.today() == timezone.localdate() == moment.astimezone(local).date()


# --- the flush -----------------------------------------------------------------------------------------


def test_flush_moves_every_buffered_use_to_its_daily_row_exactly_once(redis_cache):
    other_day = DAY + datetime.timedelta(days=1)
    UsageCount.objects.create(day=DAY, module="page", count=5)  # an earlier flush's row gets added to
    for _ in range(7):
        services.record_usage(module="page", day=DAY)
    for _ in range(3):
        services.record_usage(module="forge-macro", day=DAY)
    services.record_usage(module="page", day=other_day)
    assert buffered_keys(redis_cache)
    result = services.flush_usage_counts(actor="test")
    assert (result.batches, result.uses, result.already_applied) == (2, 11, 0)
    expected = {(DAY, "page"): 12, (DAY, "forge-macro"): 3, (other_day, "page"): 1}
    assert counts() == expected
    assert buffered_keys(redis_cache) == []
    again = services.flush_usage_counts(actor="test")
    assert (again.batches, again.uses) == (0, 0)
    assert counts() == expected


def test_uses_counted_by_a_web_process_that_was_killed_are_flushed(redis_cache, tmp_path):
    """A real process counts through ``record_usage`` and is then killed with SIGKILL before any
    flush (as an OOM kill or a dyno restart would); the flush still finds every one of its uses."""
    script = textwrap.dedent(
        f"""
        import os, signal, datetime, django
        from django.conf import settings
        django.setup()
        settings.CACHES["default"]["KEY_PREFIX"] = {redis_cache!r}
        from registrations import services
        for _ in range(40):
            services.record_usage(module="identity-proof", day=datetime.date(2026, 3, 1))
        services.record_usage(module="bare", day=datetime.date(2026, 3, 1))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {
        **os.environ,
        "ENV_FILE": "",
        "DEBUG": "1",
        "CACHE_URL": REDIS_URL,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "artemis_portal.settings",
    }
    process = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert not (tmp_path / "unused.sqlite3").exists()  # it never needed the database
    out = run("flush_usage_counts")
    assert "Flushed 1 batches, 41 uses" in out
    assert counts() == {(DAY, "identity-proof"): 40, (DAY, "bare"): 1}


def test_a_flusher_that_died_after_claiming_is_completed_by_the_next_run(redis_cache):
    for _ in range(4):
        services.record_usage(module="page", day=DAY)
    claimed = usage_counts.claim()  # ...and the flusher dies here
    assert len(claimed) == 1
    services.record_usage(module="page", day=DAY)  # a use after the claim goes to a new day hash
    result = services.flush_usage_counts(actor="test")
    assert (result.batches, result.uses) == (2, 5)
    assert counts() == {(DAY, "page"): 5}
    assert buffered_keys(redis_cache) == []


def test_a_flusher_that_died_after_committing_does_not_add_its_batch_twice(redis_cache):
    for _ in range(6):
        services.record_usage(module="page", day=DAY)
    for key in usage_counts.claim():
        assert usage_counts.apply(key) == (6, True)  # committed; the flusher dies before release()
    assert counts() == {(DAY, "page"): 6}
    result = services.flush_usage_counts(actor="test")
    assert (result.batches, result.uses, result.already_applied) == (0, 0, 1)
    assert counts() == {(DAY, "page"): 6}
    assert buffered_keys(redis_cache) == []


def test_flush_ledger_forgets_batches_after_a_week(redis_cache):
    old = UsageFlush.objects.create(
        batch="a" * 32, day=DAY, uses=3, flushed_at=timezone.now() - datetime.timedelta(days=8)
    )
    recent = UsageFlush.objects.create(batch="b" * 32, day=DAY, uses=3, flushed_at=timezone.now())
    services.flush_usage_counts(actor="test")
    assert list(UsageFlush.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not UsageFlush.objects.filter(pk=old.pk).exists()


def test_flush_command_without_redis_has_nothing_to_do():
    assert "written to the database directly" in run("flush_usage_counts")
    assert run("flush_usage_counts", "-v", "0") == ""


def test_flush_command_says_so_when_redis_does_not_answer():
    from django.core.management import CommandError

    refused = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1},
        }
    }
    with override_settings(CACHES=refused), pytest.raises(CommandError, match="counts stay buffered"):
        run("flush_usage_counts")
