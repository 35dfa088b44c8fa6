#!/usr/bin/env python
"""Requests per second and latency of the orders API under gunicorn, against GET /healthz in the same run.

    .venv/bin/python bench/api_throughput.py [--quick] [--database-url postgres://postgres@127.0.0.1:5432/postgres]

What runs: gunicorn with the project's gunicorn.conf.py (gthread; WEB_CONCURRENCY workers x
GUNICORN_THREADS threads, 2 x 4 unless --workers/--gunicorn-threads say otherwise) on a free loopback
port, against a temp SQLite database (or, with --database-url, a scratch PostgreSQL database
`bench_orders_api` created through that server and dropped at the end). This process seeds the replica
tickets and a user with --list-orders orders through Django on the same database, then drives the
server with --threads client threads (one requests.Session each, keep-alive), every scenario bounded
by --requests and --seconds in all:

* GET /healthz: the baseline, the same stack (gunicorn, Django, middleware) doing no domain work.
* POST /api/orders, each on a ticket of its own (201 expected).
* GET /api/orders as a user with --list-orders orders (200).
* GET /api/orders/:id, cycling over that user's orders (200).

The scenarios take turns in --rounds short rounds (each round a slice of every scenario's budget,
the order rotating), so a noisy spell on the shared machine hits the baseline as much as the routes.
Ratios are to the baseline pooled over the rounds; the per-round range of the req/s ratio shows the
noise within the run.

The client runs on the same 2 cores as the server, so absolute figures include its cost; the ratios
to the baseline are what to compare between runs and machines.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import support

LIST_USER = "6b00000000000000000a0001"
POST_USER = "6b00000000000000000a0002"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=4, help="client threads (4)")
    parser.add_argument("--requests", type=int, default=3000, help="most requests per scenario (3000)")
    parser.add_argument("--seconds", type=float, default=20, help="most seconds per scenario (20)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the scenarios take turns in (5)")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured requests per route first (50)")
    parser.add_argument("--list-orders", type=int, default=20, help="orders of the GET /api/orders user (20)")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY for gunicorn (2)")
    parser.add_argument("--gunicorn-threads", type=int, default=4, help="GUNICORN_THREADS for gunicorn (4)")
    parser.add_argument("--database-url", default=None, help="a postgres:// URL to create the scratch db through")
    parser.add_argument("--scratch-db", default="bench_orders_api", help="the scratch PostgreSQL database's name")
    parser.add_argument("--quick", action="store_true", help="a short run: 300 requests or 5 s per scenario")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.seconds, args.warmup = min(args.requests, 300), min(args.seconds, 5), min(args.warmup, 20)
        args.rounds = min(args.rounds, 2)
    if min(args.threads, args.requests, args.workers, args.gunicorn_threads, args.list_orders, args.rounds) < 1:
        parser.error("counts must be >= 1")
    if args.requests < args.rounds:
        parser.error("--requests must be at least --rounds")
    return args


class Result:
    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies_ms: list[float] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.error_sample = ""
        self.elapsed = 0.0
        self.attempted = 0
        self.round_rates: list[float] = []

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.elapsed if self.elapsed else float("nan")

    def add(self, other: Result) -> None:
        """Pool one round into this result."""
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.error_sample = self.error_sample or other.error_sample
        self.elapsed += other.elapsed
        self.attempted += other.attempted
        self.round_rates.append(other.rate)


def load(
    name: str,
    request: Callable[[object, int], object],
    *,
    expected: int,
    cookie: str | None,
    threads: int,
    max_requests: int,
    max_seconds: float,
    start: int = 0,
) -> Result:
    """`request(session, i)` for i = start, start + 1, ... from `threads` threads until `max_requests`
    requests were made or `max_seconds` have passed."""
    import requests

    result = Result(name)
    lock = threading.Lock()
    next_index = iter(range(start, start + max_requests))
    deadline = time.perf_counter() + max_seconds
    interrupted = threading.Event()

    def client(_: int) -> list[float]:
        latencies = []
        with requests.Session() as session:
            if cookie:
                session.headers["Cookie"] = cookie
            while time.perf_counter() < deadline and not interrupted.is_set():
                with lock:
                    i = next(next_index, None)
                if i is None:
                    break
                with lock:
                    result.attempted += 1
                started = time.perf_counter()
                try:
                    response = request(session, i)
                    outcome = response.status_code
                except requests.RequestException as exc:
                    outcome, response = type(exc).__name__, None
                took = (time.perf_counter() - started) * 1000
                if outcome == expected:
                    latencies.append(took)
                else:
                    with lock:
                        result.errors[str(outcome)] += 1
                        if not result.error_sample and response is not None:
                            result.error_sample = f"{outcome} {response.text[:300]}"
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(threads, thread_name_prefix="bench-client") as pool:
        try:
            for latencies in pool.map(client, range(threads)):
                result.latencies_ms.extend(latencies)
        except BaseException:
            interrupted.set()  # Ctrl-C: the clients finish the request in flight and stop
            raise
    result.elapsed = time.perf_counter() - started
    return result


def wait_ready(base: str, server: support.Child, *, timeout: float = 30) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer /healthz within {timeout:.0f} s:\n{server.log_tail()}")


def seed(args: argparse.Namespace) -> tuple[list[str], list[str], list[str]]:
    """(ticket ids for the warm-up POSTs, ticket ids for the measured POSTs, the list user's order ids)."""
    from common.ids import new_object_id
    from orders.services import order_create
    from tickets_replica.models import Ticket

    tickets = [
        Ticket(id=new_object_id(), title="bench concert", price=20, version=0)
        for _ in range(args.list_orders + args.warmup + args.requests)
    ]
    Ticket.objects.bulk_create(tickets, batch_size=500)
    ids = [t.id for t in tickets]
    orders = [order_create(user_id=LIST_USER, ticket_id=ticket_id).id for ticket_id in ids[: args.list_orders]]
    rest = ids[args.list_orders :]
    return rest[: args.warmup], rest[args.warmup :], orders


def report(args, info: list[str], results: list[Result]) -> bool:
    """`results[0]` is the baseline."""
    baseline = results[0]
    print("## Orders API throughput and latency\n")
    for line in info:
        print(f"- {line}")
    print(
        f"- load: {args.threads} client threads (requests.Session each, keep-alive); every scenario at most "
        f"{args.requests} requests or {args.seconds:.0f} s in all, taking turns with the others in "
        f"{args.rounds} rounds; {args.warmup} unmeasured requests per route first\n"
    )
    base = support.summary(baseline.latencies_ms)
    rows = []
    ok = True
    for result in results:
        stats = support.summary(result.latencies_ms)
        errors = sum(result.errors.values())
        ok = ok and errors == 0
        per_round = [
            rate / base_rate
            for rate, base_rate in zip(result.round_rates, baseline.round_rates, strict=True)
            if base_rate
        ]
        spread = f"{min(per_round):.2f}-{max(per_round):.2f}" if per_round else "-"
        rows.append(
            [
                result.name,
                stats["n"],
                errors,
                f"{result.rate:.0f}",
                support.ms(stats["p50"]),
                support.ms(stats["p99"]),
                support.ratio(result.rate, baseline.rate),
                spread,
                support.ratio(stats["p50"], base["p50"]),
                support.ratio(stats["p99"], base["p99"]),
            ]
        )
    print(
        support.markdown_table(
            [
                "route",
                "ok",
                "errors",
                "req/s",
                "p50 ms",
                "p99 ms",
                "req/s / base",
                "per round",
                "p50 / base",
                "p99 / base",
            ],
            rows,
        )
    )
    print(
        f"\nBaseline: {baseline.name}, {baseline.rate:.0f} req/s, p50 {support.ms(base['p50'])} ms, "
        f"p99 {support.ms(base['p99'])} ms. A req/s ratio below 1 and latency ratios above 1 are the cost of "
        "the domain work (authentication, queries, serialisation) over the bare stack; 'per round' is the "
        "lowest and highest req/s ratio of a single round."
    )
    for result in results:
        if result.errors:
            print(f"\n**{result.name}: unexpected answers** {dict(result.errors)}; first: {result.error_sample}")
    print(f"\n- load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return ok


def main() -> int:
    args = parse_args()
    support.stop_on_sigterm()
    support.add_repo_to_path()
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        print(f"# workdir {workdir}", file=sys.stderr)
        database_url = stack.enter_context(
            support.scratch_database(args.database_url, name=args.scratch_db, workdir=workdir)
        )
        data_dir = workdir / "data"
        data_dir.mkdir()
        port = support.free_port()
        env = support.service_env(
            data_dir=data_dir,
            database_url=database_url,
            GUNICORN_BIND=f"127.0.0.1:{port}",
            WEB_CONCURRENCY=str(args.workers),
            GUNICORN_THREADS=str(args.gunicorn_threads),
        )
        os.environ.update({**env, "LOG_LEVEL": "WARNING"})
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        from common.management.commands.mint_token import session_cookie_value

        stack.callback(connections.close_all)
        print("# migrating and seeding", file=sys.stderr)
        call_command("migrate", verbosity=0, interactive=False)
        warm_tickets, tickets, list_orders = seed(args)
        connections.close_all()
        list_cookie = f"session={session_cookie_value(user_id=LIST_USER, email='list@bench.test')}"
        post_cookie = f"session={session_cookie_value(user_id=POST_USER, email='post@bench.test')}"

        import gunicorn

        info = [
            *support.machine_lines(),
            f"database: {support.database_description(database_url)}",
            f"server: gunicorn {gunicorn.__version__} with gunicorn.conf.py (gthread), "
            f"{args.workers} workers x {args.gunicorn_threads} threads, access log on, 127.0.0.1:{port}",
        ]
        server = support.Child(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(support.REPO / "gunicorn.conf.py"),
                "ticketing_orders.wsgi",
            ],
            env=env,
            log_path=workdir / "gunicorn.log",
        )
        stack.callback(server.stop, timeout=25)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, server)

        def healthz(session, i):
            return session.get(f"{base}/healthz", timeout=10)

        def post(ticket_ids):
            return lambda session, i: session.post(f"{base}/api/orders", json={"ticketId": ticket_ids[i]}, timeout=10)

        def order_list(session, i):
            return session.get(f"{base}/api/orders", timeout=10)

        def order_detail(session, i):
            return session.get(f"{base}/api/orders/{list_orders[i % len(list_orders)]}", timeout=10)

        common = {"threads": args.threads}
        print("# warm-up", file=sys.stderr)
        warm = {"max_requests": args.warmup, "max_seconds": 30, **common}
        for result in (
            load("warm healthz", healthz, expected=200, cookie=None, **warm),
            load("warm post", post(warm_tickets), expected=201, cookie=post_cookie, **warm),
            load("warm list", order_list, expected=200, cookie=list_cookie, **warm),
            load("warm detail", order_detail, expected=200, cookie=list_cookie, **warm),
        ):
            if result.errors:
                raise RuntimeError(f"{result.name}: {dict(result.errors)} {result.error_sample}")

        # (name, request, expected status, cookie, most requests in all)
        scenarios = [
            ("GET /healthz (baseline)", healthz, 200, None, args.requests),
            ("POST /api/orders", post(tickets), 201, post_cookie, min(args.requests, len(tickets))),
            (f"GET /api/orders ({args.list_orders} orders)", order_list, 200, list_cookie, args.requests),
            ("GET /api/orders/:id", order_detail, 200, list_cookie, args.requests),
        ]
        results = [Result(name) for name, *_ in scenarios]
        for round_index in range(args.rounds):
            print(f"# round {round_index + 1} of {args.rounds}", file=sys.stderr)
            # Rotate the order so no scenario always follows the same one.
            for k in range(len(scenarios)):
                index = (round_index + k) % len(scenarios)
                name, request, expected, cookie, most = scenarios[index]
                server.check_alive()
                done = results[index]
                share = min(most // args.rounds, most - done.attempted)
                done.add(
                    load(
                        name,
                        request,
                        expected=expected,
                        cookie=cookie,
                        threads=args.threads,
                        max_requests=share,
                        max_seconds=args.seconds / args.rounds,
                        start=done.attempted,
                    )
                )
        server.check_alive()
        ok = report(args, info, results)
        log = server.log_tail(2_000_000)
        if "Traceback" in log or '" 500 ' in log:
            print("\n**gunicorn logged a traceback or a 500**:", file=sys.stderr)
            print(server.log_tail(), file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("# interrupted: child processes stopped, scratch database and temp files removed", file=sys.stderr)
        sys.exit(130)
