"""`python -m bench.idempotency`: CPU per POST /api/orders without and with an Idempotency-Key, A/B."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

from bench import harness
from bench.harness import Database, Run, log, object_id, postgres_backends_cpu, session_cookie, temp_workdir, wrk

SCRIPT = Path(__file__).resolve().parent / "wrk" / "idempotency.lua"
# The three kinds of request, measured in turns so that load from elsewhere falls on all of them.
KINDS = ("no header", "new key", "replay")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.idempotency", description=__doc__)
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or sqlite,postgres")
    parser.add_argument("--seconds", type=float, default=5, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="turns of the three kinds")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="used only to CREATE and DROP scratch databases named bench_hb_* (BENCH_POSTGRES_URL)",
    )
    return parser.parse_args()


def measure(run: Run, db: Database, *, seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    tickets = 40_000
    url = db.scratch("idempotency")
    env = run.env(url)
    run.django(env, "tickets", "7c", tickets)
    server, base = run.gunicorn(env)
    dbname = url.rsplit("/", 1)[-1]
    fresh = iter(range(tickets - 1))

    def lines(kind: str, count: int) -> str:
        path = run.workdir / f"posts-{time.monotonic_ns()}.tsv"
        if kind == "replay":  # one request, sent again and again: the first creates, the rest replay
            n = tickets - 1
            rows = [f"{object_id('7c', n)}\t{session_cookie(object_id('7e', n))}\treplay-{n}"]
        else:
            rows = []
            for _, n in zip(range(count), fresh, strict=False):
                key = "-" if kind == "no header" else f"key-{n:08d}-{os.urandom(8).hex()}"
                rows.append(f"{object_id('7c', n)}\t{session_cookie(object_id('7e', n))}\t{key}")
        path.write_text("\n".join(rows) + "\n")
        return str(path)

    totals = {kind: {"requests": 0, "cpu_s": 0.0, "pg_cpu_s": 0.0, "duration_s": 0.0, "bad": 0} for kind in KINDS}
    per_round = int(tickets / (2 * (rounds + 1)))
    with mock.patch.object(harness, "WRK_SCRIPT", SCRIPT):
        for kind in KINDS:  # warm-up: every worker imports, connects and has seen each path once
            wrk(base + "/api/orders", "post", lines(kind, 500), seconds=1)
        for turn in range(rounds):
            for kind in KINDS:
                before = postgres_backends_cpu(dbname) if db.kind == "postgres" else {}
                result = wrk(base + "/api/orders", "post", lines(kind, per_round), seconds=seconds, cpu_of=server.pid)
                after = postgres_backends_cpu(dbname) if db.kind == "postgres" else {}
                server.check_alive()
                # A new request that is not a 201 (the file ran out, an error) would not be the path measured.
                wanted = result["c201"] if kind != "replay" else result["c_replayed"]
                bad = result["requests"] - wanted
                log(f"{db.label} round {turn + 1} {kind}: {result['requests']} requests, {bad} not as meant")
                total = totals[kind]
                total["requests"] += result["requests"]
                total["cpu_s"] += result["cpu_s"]
                total["pg_cpu_s"] += sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
                total["duration_s"] += result["duration_s"]
                total["bad"] += bad
    run.stop(server)
    db.release(url)
    return {
        kind: {
            "requests": t["requests"],
            "rate": t["requests"] / t["duration_s"],
            "cpu_ms": t["cpu_s"] / t["requests"] * 1000,
            "pg_cpu_ms": t["pg_cpu_s"] / t["requests"] * 1000,
            "not_as_meant": t["bad"],
        }
        for kind, t in totals.items()
    }


def main() -> int:
    args = parse_args()
    results = {}
    with temp_workdir() as workdir:
        run = Run(code=harness.REPO, workdir=workdir, quick=False)
        try:
            for kind in args.db.split(","):
                db = Database(kind, args.postgres_url if kind == "postgres" else "", workdir)
                db.drop_leftovers()
                try:
                    run.migrate_template(db)
                    results[db.label] = measure(run, db, seconds=args.seconds, rounds=args.rounds)
                finally:
                    run.stop_all()
                    db.drop_all()
        finally:
            run.stop_all()
    print("| database | request | req/s | server CPU ms/request | PostgreSQL CPU ms/request | vs no header (CPU) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for label, kinds in results.items():
        plain = kinds["no header"]["cpu_ms"]
        for kind, r in kinds.items():
            pg = f"{r['pg_cpu_ms']:.2f}" if label == "PostgreSQL" else "-"
            print(f"| {label} | {kind} | {r['rate']:.0f} | {r['cpu_ms']:.2f} | {pg} | {r['cpu_ms'] / plain:.2f} |")
    print(json.dumps(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
