"""`python -m bench`: run the scenarios on SQLite and PostgreSQL and rewrite docs/benchmarks.md."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from importlib.metadata import version
from pathlib import Path

from bench import report
from bench.harness import REPO, VARIANTS, Database, Figure, Run, checkout, log
from bench.scenarios import ON_REQUEST, SCENARIOS, SERVER_SCENARIOS, WITH_BASELINE, versus_baseline

BASELINE, BASELINE_LABEL = "5a7fa8a", " [baseline server]"  # the last revision whose default server was gunicorn


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add, env = parser.add_argument, os.environ.get
    add("--quick", action="store_true", help="small sizes: every scenario in seconds")
    add("--db", help="sqlite, postgres or sqlite,postgres (the default; --quick: sqlite)")
    add("--only", default=",".join(SCENARIOS), help=f"of {', '.join(SCENARIOS)} (the default), and decode")
    pg = env("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    add("--postgres-url", default=pg, help="used only to CREATE and DROP databases bench_hb_* (BENCH_POSTGRES_URL)")
    add("--code", type=Path, default=REPO, help="the checkout to measure (default: this one)")
    # Its default server runs the HTTP scenarios and the flash sale beside this one's; decode reads its events.py.
    add("--baseline", default=env("BENCH_BASELINE", BASELINE), help=f"a checkout or a revision ({BASELINE}), or none")
    add("--variant", choices=VARIANTS, default="", help="; ".join(f"{k}: {v}" for k, v in VARIANTS.items()))
    add("--out", type=Path, help="the Markdown page (default docs/benchmarks.md for this checkout)")
    add("--json", type=Path, help="also write the figures as JSON")
    add("--keep", action="store_true", help="keep the temp folder (logs, SQLite files)")
    args = parser.parse_args()
    args.code, args.db = args.code.resolve(), args.db or ("sqlite" if args.quick else "sqlite,postgres")
    args.out = args.out or (REPO / "docs" / "benchmarks.md" if args.code == REPO else None)
    if unknown := set(args.only.split(",")) - {*SCENARIOS, *ON_REQUEST}:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}")
    return args


def describe(args: argparse.Namespace, databases: list[Database], baseline: Run | None) -> list[str]:
    """The page's lines about the run: the code, the machine, the software and the load."""
    from messaging.embedded import nats_server_binary

    def output(*command: str, cwd: Path = REPO) -> str:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True).stdout.strip()

    code = f"`{output('git', 'rev-parse', '--short', 'HEAD', cwd=args.code) or '?'}`"
    code += " plus uncommitted changes" if output("git", "status", "--porcelain", "-uno", cwd=args.code) else ""
    code += f" ({args.variant}: {VARIANTS[args.variant]})" if args.variant else ""
    if baseline is not None:
        rev = output("git", "rev-parse", "--short", "HEAD", cwd=baseline.code) or baseline.code
        code += f"; baseline: commit `{rev}` ({baseline.server} as its files configure it)"
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((x.split(":", 1)[1].strip() for x in cpuinfo if "model name" in x), platform.machine())
    load, when = ", ".join(f"{x:.1f}" for x in os.getloadavg()), f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    return [
        f"run: {when}, {'--quick' if args.quick else 'full sizes'}; code: commit {code}",
        f"machine: {os.cpu_count()} CPUs ({cpu}), load average {load} at the end; shared with other work, so "
        "compare each figure with its baseline rather than across runs",
        f"software: Python {platform.python_version()}, granian {version('granian')} (as ticketing_orders/server.py "
        f"configures it), gunicorn {version('gunicorn')}, nats-py {version('nats-py')}, "
        f"{output(nats_server_binary(), '--version')}, {', '.join(db.version() for db in databases)}",
        "load: wrk -t2 -c32 (HTTP); CPU per request = utime + stime of the server's main process and workers "
        "(/proc) / requests served; the HTTP scenarios and the flash sale log at INFO (an access line a request)",
    ]


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped as by Ctrl-C: the processes and files too
    figures: list[Figure] = []
    failures: list[str] = []
    names, started, workdir = args.only.split(","), time.monotonic(), Path(tempfile.mkdtemp(prefix="bench-hb-"))
    databases = [Database(kind, args.postgres_url, workdir) for kind in args.db.split(",")]
    cpu_target = 0.70 if args.baseline == BASELINE and not args.variant else 1.05
    with contextlib.ExitStack() as stack:

        def measure(name: str, this: Run, db: Database) -> list[Figure] | None:
            began = time.monotonic()
            try:
                return {**SCENARIOS, **ON_REQUEST}[name](this, db)
            except Exception as exc:
                traceback.print_exc()
                failures.append(f"{name}{this.label} on {db.label}: {type(exc).__name__}: {str(exc)[:300]}")
                return None
            finally:
                this.processes.close()
                db.drop(list(db.created))
                log(f"{db.label}: {name}{this.label} took {time.monotonic() - began:.0f} s")

        stack.callback(lambda: log(f"logs and databases kept in {workdir}") if args.keep else shutil.rmtree(workdir))
        run, baseline = Run(args.code, workdir, args.quick, variant=args.variant), None
        if args.baseline != "none" and set(names) & {*SERVER_SCENARIOS, *WITH_BASELINE}:
            code = stack.enter_context(checkout(args.baseline, workdir))
            baseline = run.baseline = Run(code, workdir, args.quick, BASELINE_LABEL)
        for db in databases:
            stack.callback(lambda db=db: db.drop([name for name in [*db.created, db.template] if name]))
            db.drop_leftovers()
            log(f"{db.label}: migrating a template database")
            run.migrate_template(db)
            for name in names:
                figures += (ours := measure(name, run, db)) or []
                if baseline and name in SERVER_SCENARIOS and (theirs := measure(name, baseline, db)) is not None:
                    figures += theirs + (versus_baseline(ours, theirs, BASELINE_LABEL, cpu_target) if ours else [])
                if args.json:  # as it goes: a long run's figures survive its interruption
                    args.json.write_text(json.dumps([dataclasses.asdict(f) for f in figures], indent=1, default=str))
        context = describe(args, databases, baseline)
    log(f"done in {time.monotonic() - started:.0f} s")
    page = report.write(figures, context, failures, args.out)
    if args.out:
        log(f"wrote {args.out} and its chart")
    else:
        print(page)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: child processes stopped, scratch databases and temp files removed")
        sys.exit(130)
