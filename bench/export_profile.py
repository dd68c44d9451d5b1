#!/usr/bin/env python3
"""Profile one copy export in process: where the time of ``exports.write_export`` goes (cProfile).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        /path/to/venv/bin/python bench/export_profile.py --records 20000 [--top 25] [--no-profile]

Creates a scratch database ``artemis_bench_export_profile_<pid>`` on the server DATABASE_URL names,
fills it as ``bench/fulfilment_export.py`` does (that many earlier requests of one person, fields
encrypted as in production, plus an approved copy request), then builds the export once to warm up
(imports, content types) and once measured: wall time and records per second without the profiler,
then once more under cProfile, printing the top entries by own time and by cumulative time. The
scratch database is dropped at the end. ``bench/fulfilment_export.py`` measures the same export end to
end through a real worker (time from queuing, and the worker's memory).
"""

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fulfilment_export import admin_sql, seed, with_database  # noqa: E402


def export_once(request_id):
    """Build the request's export as the fulfilment job does; returns the number of records."""
    from dsr_requests import exports, providers, services
    from dsr_requests.models import RightsRequest

    rights_request = RightsRequest.objects.get(pk=request_id)
    _size, _sha, records = exports.write_export(
        f"{rights_request.reference}-zip.export",
        kind="zip",
        rights_request=rights_request,
        subject=services.subject_for(rights_request),
        providers=providers.all_providers(),
        activities=[],
    )
    return records


def child(records, top, profile):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artemis_portal.settings")
    request_id, _approver = seed(records)
    export_once(request_id)  # warm-up
    started = time.perf_counter()
    exported = export_once(request_id)
    seconds = time.perf_counter() - started
    print(f"{exported:,} records in {seconds:.2f} s: {exported / seconds:,.0f} records/s")
    if not profile:
        return
    profiler = cProfile.Profile()
    profiler.enable()
    export_once(request_id)
    profiler.disable()
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(top)
        print(f"\n== top {top} by {order} ==")
        print(text.getvalue().split("\n\n", 1)[-1].strip())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.records, args.top, not args.no_profile)
        return
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL server (the benchmark makes its own scratch database).")
    import subprocess

    name = f"artemis_bench_export_profile_{os.getpid()}"
    admin_sql(base_url, f"DROP DATABASE IF EXISTS {name}")
    admin_sql(base_url, f"CREATE DATABASE {name}")
    try:
        with tempfile.TemporaryDirectory() as export_dir:
            env = {
                **os.environ,
                "DATABASE_URL": with_database(base_url, name),
                "EXPORT_DIR": export_dir,
                "EXPORT_STORAGE": "",
                "EMAIL_URL": "dummymail://",
                "DEBUG": "false",
                "ALLOWED_HOSTS": "localhost",
                "APP_BASE_URL": "https://localhost",
            }
            command = [
                sys.executable,
                __file__,
                "--child",
                "--records",
                str(args.records),
                "--top",
                str(args.top),
            ]
            if args.no_profile:
                command.append("--no-profile")
            subprocess.run(command, cwd=ROOT, env=env, check=True)
    finally:
        admin_sql(base_url, f"DROP DATABASE IF EXISTS {name}")


if __name__ == "__main__":
    main()
