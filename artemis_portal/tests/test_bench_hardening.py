"""Smoke run of bench/hardening.py (the 60 s load and fault bench) for a few seconds with a few clients.

It checks the bench still runs and still passes on the current code: gunicorn with production settings,
every kind of traffic answered as expected, every accepted submission and install stored once. It
needs what the bench needs, PostgreSQL (createdb) and Redis, so it runs in the PostgreSQL pass of CI,
which sets ARTEMIS_REQUIRE_REDIS so that a Redis that did not start fails the test instead of skipping it.
The PostgreSQL restart phase is never run here: it would stop the server under the other tests.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def _redis_answers():
    if not shutil.which("redis-cli"):
        return False
    result = subprocess.run(["redis-cli", "ping"], capture_output=True, text=True, timeout=5, check=False)
    return result.stdout.strip() == "PONG"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the bench creates a PostgreSQL database")
def test_hardening_bench_passes_a_short_run_with_few_clients():
    if not _redis_answers():
        why = "the bench shares rate limits between workers through Redis, which does not answer"
        if os.environ.get("ARTEMIS_REQUIRE_REDIS"):  # .ci/run's PostgreSQL pass: a skip would hide it
            pytest.fail(why + " (ARTEMIS_REQUIRE_REDIS is set)")
        pytest.skip(why)
    result = subprocess.run(
        [sys.executable, "bench/hardening.py", "--duration", "3", "--clients", "4"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": os.environ["DATABASE_URL"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "result: PASS" in result.stdout
    assert "0 without exactly one stored request" in result.stdout
