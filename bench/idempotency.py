"""`python -m bench.idempotency`: CPU per POST /api/orders without and with an Idempotency-Key, A/B.

Two measurements of the same three kinds of request (no header, a new key, a replay), in turns:
under wrk against gunicorn (`--http`, CPU of gunicorn's processes and of PostgreSQL's backends), and
in one process through Django's full request path without an HTTP server (`--in-process`, the
default; CPU of that process and of its PostgreSQL backend), which a loaded machine disturbs less.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

from bench import harness
from bench.harness import Database, Run, log, object_id, postgres_backends_cpu, session_cookie, temp_workdir, wrk

SCRIPT = Path(__file__).resolve().parent / "wrk" / "idempotency.lua"
# The three kinds of request, measured in turns so that load from elsewhere falls on all of them.
KINDS = ("no header", "new key", "replay")
WARM_UP = 20  # requests of each kind before any is measured


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.idempotency", description=__doc__)
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or sqlite,postgres")
    parser.add_argument("--http", action="store_true", help="under wrk against gunicorn instead of in process")
    parser.add_argument("--seconds", type=float, default=5, help="--http: per measurement")
    parser.add_argument("--requests", type=int, default=300, help="in process: per measurement")
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
    server, base = run.api_server(env)
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


def in_process(run: Run, db: Database, *, requests: int, rounds: int) -> dict[str, dict[str, float]]:
    """This module again as a child on a scratch database (`--child`), where the requests are made."""
    url = db.scratch("idempotency")
    env = {**run.env(url), "DJANGO_SETTINGS_MODULE": "ticketing_orders.settings"}
    tickets = 2 * (requests * rounds + WARM_UP) + 1  # a fresh ticket for each new request, 0 for the replay
    run.django(env, "tickets", "7c", tickets)
    out = subprocess.run(
        [sys.executable, "-m", "bench.idempotency", "--child", str(requests), str(rounds)],
        cwd=run.code,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    db.release(url)
    if out.returncode != 0:
        raise RuntimeError(f"bench.idempotency --child failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(requests: int, rounds: int) -> None:
    """In the child: the requests through Django's test client (the whole middleware and view path)."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    client = Client(HTTP_HOST="localhost")  # one of the default ALLOWED_HOSTS
    numbers = iter(range(1, 10**9))  # 0 is the replayed request

    def backend_cpu() -> float:
        if connection.vendor != "postgresql":
            return 0.0
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / harness.CLOCK_TICKS

    def prepared(kind: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """The requests, cookies signed before the clock starts (the auth service's work, not ours)."""
        out = []
        for _ in range(count):
            n = 0 if kind == "replay" else next(numbers)
            headers = {"HTTP_COOKIE": session_cookie(object_id("7e", n))}
            if kind != "no header":
                headers["HTTP_IDEMPOTENCY_KEY"] = f"key-{n}"
            out.append((json.dumps({"ticketId": object_id("7c", n)}), headers))
        return out

    def send(kind: str, batch: list[tuple[str, dict[str, str]]], *, first_replay: bool = False) -> None:
        for body, headers in batch:
            response = client.generic("POST", "/api/orders", body, "application/json", **headers)
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            if response.status_code != 201 or replayed != (kind == "replay" and not first_replay):
                raise RuntimeError(f"{kind}: {response.status_code} {response.content[:200]!r}")
            first_replay = False

    for kind in KINDS:  # warm-up; the replay's first request creates the order the others replay
        send(kind, prepared(kind, WARM_UP), first_replay=kind == "replay")
    totals = {kind: {"requests": 0, "cpu_s": 0.0, "pg_cpu_s": 0.0, "wall_s": 0.0} for kind in KINDS}
    for _ in range(rounds):
        for kind in KINDS:
            batch = prepared(kind, requests)
            cpu, pg, wall = time.process_time(), backend_cpu(), time.perf_counter()
            send(kind, batch)
            total = totals[kind]
            total["cpu_s"] += time.process_time() - cpu
            total["pg_cpu_s"] += backend_cpu() - pg
            total["wall_s"] += time.perf_counter() - wall
            total["requests"] += requests
    results = {
        kind: {
            "requests": t["requests"],
            "rate": t["requests"] / t["wall_s"],
            "cpu_ms": t["cpu_s"] / t["requests"] * 1000,
            "pg_cpu_ms": t["pg_cpu_s"] / t["requests"] * 1000,
        }
        for kind, t in totals.items()
    }
    print(json.dumps(results))


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        child(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    args = parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    failures: list[str] = []
    with temp_workdir() as workdir:
        run = Run(code=harness.REPO, workdir=workdir, quick=False)
        try:
            for kind in args.db.split(","):
                db = Database(kind, args.postgres_url if kind == "postgres" else "", workdir)
                db.drop_leftovers()
                try:
                    log(f"{db.label}: migrating a template database")
                    run.migrate_template(db)
                    if args.http:
                        results[db.label] = measure(run, db, seconds=args.seconds, rounds=args.rounds)
                    else:
                        results[db.label] = in_process(run, db, requests=args.requests, rounds=args.rounds)
                except Exception as exc:  # the other database's figures are still worth printing
                    failures.append(f"{db.label}: {type(exc).__name__}: {str(exc)[-500:]}")
                finally:
                    run.stop_all()
                    db.drop_all()
        finally:
            run.stop_all()
    where = "gunicorn under wrk -t2 -c32" if args.http else "one process, one request at a time"
    print(f"{where}; {args.rounds} rounds of each kind in turns\n")
    print("| database | request | req/s | server CPU ms/request | PostgreSQL CPU ms/request | vs no header (CPU) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for label, kinds in results.items():
        plain = kinds["no header"]["cpu_ms"]
        for kind, r in kinds.items():
            pg = f"{r['pg_cpu_ms']:.2f}" if label == "PostgreSQL" else "-"
            print(f"| {label} | {kind} | {r['rate']:.0f} | {r['cpu_ms']:.2f} | {pg} | {r['cpu_ms'] / plain:.2f} |")
    print(json.dumps(results), file=sys.stderr)
    for failure in failures:
        log(f"failed: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
