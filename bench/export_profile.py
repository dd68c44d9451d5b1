#!/usr/bin/env python3
"""Profile one copy export in process: where the time of ``exports.write_export`` goes (cProfile).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        /path/to/venv/bin/python bench/export_profile.py --records 20000 [--top 25] [--no-profile] \\
        [--baseline /tmp/old-tree] [--rounds 3]

Creates a scratch database ``artemis_bench_export_profile_<pid>`` on the server DATABASE_URL names,
fills it as ``bench/fulfilment_export.py`` does (that many earlier requests of one person, fields
encrypted as in production, plus an approved copy request), then builds the export once to warm up
(imports, content types) and once measured: wall time and records per second without the profiler,
then once more under cProfile (in one process: ``EXPORT_PROCESSES=0``, as cProfile sees one process),
printing the top entries by own time and by cumulative time. The
scratch database is dropped at the end. ``bench/fulfilment_export.py`` measures the same export end to
end through a real worker (time from queuing, and the worker's memory).

``--baseline DIR`` also times the export of another checkout of the project (for example
``git archive main | tar -x -C /tmp/old``) on the same scratch database, in a process of its own,
alternating with this tree for ``--rounds`` rounds, so old and new are measured side by side under the
same load; both read this tree's ``.env`` (``ENV_FILE``), so both hold the same keys.
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


def child(records, top, profile, *, label="", seed_only=False, timed_only=False):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artemis_portal.settings")
    if timed_only:
        import django

        django.setup()
        from dsr_requests.models import RightsRequest

        request_id = RightsRequest.objects.get(reference="DSR-BENCH0").pk
    else:
        request_id, _approver = seed(records)
    if seed_only:
        return
    export_once(request_id)  # warm-up
    started = time.perf_counter()
    exported = export_once(request_id)
    seconds = time.perf_counter() - started
    load = os.getloadavg()[0]
    print(
        f"{label}{exported:,} records in {seconds:.2f} s: "
        f"{exported / seconds:,.0f} records/s (load {load:.2f})"
    )
    if not profile:
        return
    # cProfile sees one process: the profiled run reads, decrypts and encodes in this process
    # (EXPORT_PROCESSES=0), so the per-record work shows up; the timed run above used the settings.
    from django.conf import settings

    settings.EXPORT_PROCESSES = 0
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
    parser.add_argument("--baseline", help="another checkout to time side by side on the same data")
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline: timed runs of each")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--label", default="", help=argparse.SUPPRESS)
    parser.add_argument("--seed-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timed-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.code:  # the baseline's code, not this tree's
            sys.path.insert(0, args.code)
            sys.modules.pop("bench", None)
        child(
            args.records,
            args.top,
            not args.no_profile,
            label=args.label,
            seed_only=args.seed_only,
            timed_only=args.timed_only,
        )
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
                "ENV_FILE": os.environ.get("ENV_FILE", str(ROOT / ".env")),
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
            if not args.baseline:
                if args.no_profile:
                    command.append("--no-profile")
                subprocess.run(command, cwd=ROOT, env=env, check=True)
                return
            subprocess.run([*command, "--seed-only"], cwd=ROOT, env=env, check=True)
            baseline = str(Path(args.baseline).resolve())
            for _round in range(args.rounds):
                for label, code in (("baseline ", baseline), ("this tree ", str(ROOT))):
                    subprocess.run(
                        [*command, "--timed-only", "--no-profile", "--code", code, "--label", label],
                        cwd=code,
                        env=env,
                        check=True,
                    )
            if not args.no_profile:
                subprocess.run(
                    [*command, "--timed-only", "--label", "this tree, profiled: "],
                    cwd=ROOT,
                    env=env,
                    check=True,
                )
    finally:
        admin_sql(base_url, f"DROP DATABASE IF EXISTS {name}")


if __name__ == "__main__":
    main()
