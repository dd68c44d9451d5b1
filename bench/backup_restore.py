#!/usr/bin/env python3
"""Benchmark: backup, verify and restore of many registrations on PostgreSQL (time and peak memory).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        /path/to/venv/bin/python bench/backup_restore.py --rows 10000 100000

It creates a scratch database on the server DATABASE_URL names (``artemis_bench_backups_<pid>``),
migrates it, fills it with registrations, and drops it at the end; nothing else is touched. Each step runs
as its own ``manage.py`` process, as an operator would run it, and is measured from outside: wall time and
that process's peak resident memory (ru_maxrss from wait4). ``manage.py check`` is measured too: the floor
any Django process costs. Results print as a Markdown table for docs/benchmarks.md.
"""

import argparse
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
SEED_BATCH = 5000


def with_database(url, name):
    """``url`` pointing at database ``name`` on the same server."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def admin_sql(url, statement):
    """Run one statement on the server's maintenance database (CREATE / DROP DATABASE)."""
    import psycopg2

    connection = psycopg2.connect(with_database(url, "postgres"))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def manage(env, *args):
    """Run ``manage.py args``; return (seconds, peak RSS of that process in MiB, its output)."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode()
    if process.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{output}")
    return seconds, usage.ru_maxrss / 1024, output


SEED = """
import datetime as dt, os, secrets
from django.db import transaction
from registrations.models import Registration
count, batch = int(os.environ["BENCH_ROWS"]), int(os.environ["BENCH_BATCH"])
now = dt.datetime.now(dt.UTC)
Registration.objects.all().delete()
for start in range(0, count, batch):
    with transaction.atomic():
        Registration.objects.bulk_create(
            Registration(
                client_key=f"bench-{n:07d}-{secrets.token_hex(8)}",
                shared_secret=secrets.token_urlsafe(32),
                base_url=f"https://site{n}.atlassian.net/wiki",
                display_url=f"https://site{n}.atlassian.net/wiki",
                product_type="confluence",
                description="Atlassian Confluence",
                plugins_version="1001.0.0",
                server_version="6452",
                state="enabled",
                installed_at=now,
                updated_at=now,
                enabled_at=now,
            )
            for n in range(start, min(count, start + batch))
        )
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    options = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit(
            "Set DATABASE_URL to a PostgreSQL server (any database on it); this benchmark is for PostgreSQL."
        )

    name = f"artemis_bench_backups_{os.getpid()}"
    backup_dir = tempfile.mkdtemp(prefix="artemis-bench-backups-")
    env = {
        "PATH": os.environ["PATH"],
        "ENV_FILE": "",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FERNET_KEYS": Fernet.generate_key().decode(),
        "BACKUP_KEYS": Fernet.generate_key().decode(),
        "APP_BASE_URL": "https://bench.example.com",
        "DATABASE_URL": with_database(url, name),
        "BACKUP_DIR": backup_dir,
        "LOG_LEVEL": "WARNING",
    }
    admin_sql(url, f'CREATE DATABASE "{name}"')
    results = []
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        results.append(("django floor (`check`)", "-", *manage(env, "check")[:2]))
        for rows in options.rows:
            seed_seconds, _, _ = manage(
                {**env, "BENCH_ROWS": str(rows), "BENCH_BATCH": str(SEED_BATCH)}, "shell", "-c", SEED
            )
            print(f"seeded {rows:,} registrations in {seed_seconds:.1f} s", file=sys.stderr)
            for path in Path(backup_dir).glob("*.backup"):
                path.unlink()
            seconds, rss, _ = manage(env, "backup_registrations", "-v", "0")
            (backup,) = Path(backup_dir).glob("*.backup")
            size = backup.stat().st_size / 1024 / 1024
            results.append((f"backup_registrations ({size:.1f} MiB file)", rows, seconds, rss))
            results.append(("verify_backups", rows, *manage(env, "verify_backups")[:2]))
            results.append(
                (
                    "restore_registrations --dry-run, all unchanged",
                    rows,
                    *manage(env, "restore_registrations", str(backup), "--dry-run", "-v", "0")[:2],
                )
            )
            manage(
                env,
                "shell",
                "-c",
                "from registrations.models import Registration as R; R.objects.all().delete()",
            )
            results.append(
                (
                    "restore_registrations into an empty table",
                    rows,
                    *manage(env, "restore_registrations", str(backup), "-v", "0")[:2],
                )
            )
    finally:
        admin_sql(url, f'DROP DATABASE IF EXISTS "{name}"')
        for path in Path(backup_dir).iterdir():
            path.unlink()
        os.rmdir(backup_dir)

    print(
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {server_version(url)}, {platform.system()} {platform.release()}\n"
    )
    print("| step | registrations | wall time (s) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|")
    for step, rows, seconds, rss in results:
        count = f"{rows:,}" if isinstance(rows, int) else rows
        print(f"| {step} | {count} | {seconds:.1f} | {rss:.0f} |")


def server_version(url):
    """The PostgreSQL server's version string, e.g. 15.8."""
    import psycopg2

    connection = psycopg2.connect(with_database(url, "postgres"))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return cursor.fetchone()[0].split()[0]
    finally:
        connection.close()


if __name__ == "__main__":
    main()
