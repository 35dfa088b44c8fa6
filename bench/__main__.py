"""`python -m bench`: run the scenarios on SQLite and PostgreSQL and rewrite docs/benchmarks.md."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from bench import report
from bench.harness import REPO, Database, Figure, Run, log, temp_workdir
from bench.scenarios import SCENARIOS, SERVER_SCENARIOS, versus_baseline
from bench.tracing import AB_SCENARIOS

# The A/B scenarios compare two checkouts and run only when named in --only.
ALL_SCENARIOS = {**SCENARIOS, **AB_SCENARIOS}

NOTES = "benchmarks-notes.md"
BASELINE_LABEL = " [baseline server]"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: every scenario in seconds")
    parser.add_argument("--db", help="sqlite, postgres or sqlite,postgres (the default; --quick: sqlite)")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"scenarios, of {', '.join(SCENARIOS)} (the default), and {', '.join(AB_SCENARIOS)}",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="used only to CREATE and DROP scratch databases named bench_hb_* (BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout to measure (default: this one)")
    parser.add_argument(
        "--baseline",
        default=os.environ.get("BENCH_BASELINE", "5a7fa8a"),
        help="a checkout (directory) or a git revision of this repository whose default server runs the HTTP "
        "scenarios and the flash sale beside this one's, in the same run (default 5a7fa8a, the last gunicorn "
        "default; 'none' to skip)",
    )
    parser.add_argument("--out", type=Path, help="the Markdown page (default docs/benchmarks.md for this checkout)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, SQLite files)")
    parser.add_argument(
        "--ab-baseline",
        default="bd24c03",
        help="what the A/B scenarios (tracing) compare --code with: a checkout's folder or a git revision "
        "(default bd24c03, the last revision without tracing)",
    )
    args = parser.parse_args()
    args.code = args.code.resolve()
    args.db = args.db or ("sqlite" if args.quick else "sqlite,postgres")
    if args.out is None and args.code == REPO:
        args.out = REPO / "docs" / "benchmarks.md"
    for name in args.only.split(","):
        if name not in ALL_SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    return args


@contextlib.contextmanager
def baseline_checkout(spec: str, workdir: Path) -> Iterator[Path | None]:
    """The baseline's code: the directory given, or a detached git worktree of the revision, removed after."""
    if spec == "none":
        yield None
        return
    if Path(spec).is_dir():
        yield Path(spec).resolve()
        return
    path = workdir / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), spec], cwd=REPO, check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO, capture_output=True)


def describe(code: Path, databases: list[Database], quick: bool, baseline: Run | None = None) -> list[str]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=code, capture_output=True, text=True)
        return out.stdout.strip()

    dirty = " plus uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    if baseline is not None:
        base_rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=baseline.code, capture_output=True, text=True
        ).stdout.strip()
        dirty += (
            f"; baseline: commit `{base_rev or baseline.code}` ({baseline.server_kind()} as its files configure it)"
        )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.machine(),
    )
    from importlib.metadata import version

    from messaging.embedded import nats_server_binary

    nats_version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    return [
        f"run: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {'--quick' if quick else 'full sizes'}; code: commit "
        f"`{git('rev-parse', '--short', 'HEAD') or '?'}`{dirty}",
        f"machine: {os.cpu_count()} CPUs ({cpu}), load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at "
        "the end; shared with other work, so compare each figure with its baseline rather than across runs",
        f"software: Python {platform.python_version()}, granian {version('granian')} (as ticketing_orders/server.py "
        f"configures it), gunicorn {version('gunicorn')}, nats-py {version('nats-py')}, {nats_version}, "
        + ", ".join(db.version() for db in databases),
        "load: wrk -t2 -c32 (HTTP); CPU per request = utime + stime of the server's main process and workers "
        "(/proc) / requests served; the HTTP scenarios and the flash sale log at INFO (an access line a request)",
    ]


def main() -> int:
    args = parse_args()

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    figures: list[Figure] = []
    failures: list[str] = []
    started = time.monotonic()
    with temp_workdir(keep=args.keep) as workdir, baseline_checkout(args.baseline, workdir) as baseline_code:
        run = Run(code=args.code, workdir=workdir, quick=args.quick, baseline=args.ab_baseline)
        baseline = None
        if baseline_code is not None:
            baseline = Run(code=baseline_code, workdir=workdir, quick=args.quick, label=BASELINE_LABEL)
        databases = [
            Database(kind, args.postgres_url if kind == "postgres" else "", workdir) for kind in args.db.split(",")
        ]
        try:
            for db in databases:
                db.drop_leftovers()
                log(f"{db.label}: migrating a template database")
                run.migrate_template(db)
                for name in args.only.split(","):
                    runs = [run] + ([baseline] if baseline and name in SERVER_SCENARIOS else [])
                    results: list[list[Figure]] = []
                    for this in runs:
                        began = time.monotonic()
                        try:
                            results.append(ALL_SCENARIOS[name](this, db))
                            figures += results[-1]
                        except Exception as exc:
                            traceback.print_exc()
                            failures.append(f"{name}{this.label} on {db.label}: {type(exc).__name__}: {str(exc)[:300]}")
                        finally:
                            this.stop_all()
                            log(f"{db.label}: {name}{this.label} took {time.monotonic() - began:.0f} s")
                    if len(results) == 2:
                        figures += versus_baseline(*results, BASELINE_LABEL)
                    if args.json:  # as it goes: a long run's figures survive its interruption
                        args.json.write_text(json.dumps([dataclasses.asdict(f) for f in figures], default=str))
            context = describe(args.code, databases, args.quick, baseline)
        finally:
            run.stop_all()
            for db in databases:
                db.drop_all()
    log(f"done in {time.monotonic() - started:.0f} s")
    chart = None
    if args.out:
        chart_path = args.out.with_suffix(".png")
        report.chart(figures, chart_path)
        chart = chart_path.name
    page = report.markdown(figures, context, notes=NOTES, chart=chart, failures=failures)
    if args.out:
        args.out.write_text(page)
        log(f"wrote {args.out} and {chart}")
    else:
        print(page)
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(f) for f in figures], indent=1, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: child processes stopped, scratch databases and temp files removed")
        sys.exit(130)
