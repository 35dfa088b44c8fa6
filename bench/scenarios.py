"""The scenarios: each measures the service and its baseline in the same run and returns Figures."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import time
from collections.abc import Callable
from typing import Any

from bench.harness import (
    Database,
    Figure,
    Run,
    log,
    num,
    object_id,
    postgres_backends_cpu,
    process_tree_cpu,
    session_cookie,
    wrk,
)


def nats_call(coro_fn: Callable[..., Any], url: str, *args: Any) -> Any:
    """Run `coro_fn(js, *args)` on a fresh nats-py connection."""
    import nats

    async def main() -> Any:
        client = await nats.connect(servers=[url], connect_timeout=5)
        try:
            return await coro_fn(client.jetstream(), *args)
        finally:
            await client.close()

    return asyncio.run(main())


async def add_tickets_stream(js: Any) -> None:
    """The stream the tickets service would own; the worker consumes ticket events from it."""
    from nats.js.api import StreamConfig

    await js.add_stream(StreamConfig(name="tickets", subjects=["ticket:created", "ticket:updated"]))


async def publish_all(js: Any, messages: list[tuple[str, bytes, str]]) -> float:
    """Publish (subject, data, msg id) with a bounded window of acks outstanding; seconds taken."""
    started = time.perf_counter()
    for subject, data, msg_id in messages:
        await js.publish_async(subject, data, headers={"Nats-Msg-Id": msg_id})
    await asyncio.wait_for(js.publish_async_completed(), 120)
    return time.perf_counter() - started


def rate_figure(
    scenario: str, db: Database, n: int, seconds: float, base_seconds: float, base_name: str, target: float
) -> Figure:
    rate, base = n / seconds, n / base_seconds
    return Figure(
        scenario=scenario,
        database=db.label,
        measured=f"{rate:.0f} msg/s ({n} in {seconds:.2f} s)",
        baseline=f"{base_name}: {base:.0f} msg/s",
        ratio=rate / base,
        ratio_label=f"{rate / base:.0%} of baseline",
        target=f">= {target:.0%} of baseline",
        met=rate / base >= target,
        numbers={"rate": rate, "baseline_rate": base, "n": n, "ratio_target": target},
    )


# --- HTTP ------------------------------------------------------------------------------------------


def http_figure(scenario: str, db: Database, ours: dict, bare: dict, rate_target: float, cpu_target: float) -> Figure:
    cpu, bare_cpu = ours["cpu_s"] / ours["requests"] * 1000, bare["cpu_s"] / bare["requests"] * 1000
    rate_ratio, cpu_ratio = ours["rate"] / bare["rate"], cpu / bare_cpu
    pg = f", PostgreSQL backends {num(ours['pg_cpu_ms'])} ms" if "pg_cpu_ms" in ours else ""

    def text(r: dict, cpu_ms: float) -> str:
        return f"{r['rate']:.0f} req/s, p50 {num(r['p50_ms'])} / p99 {num(r['p99_ms'])} ms, {num(cpu_ms)} ms CPU/req"

    unexpected = ours["requests"] - ours["c2xx"]
    return Figure(
        scenario=scenario,
        database=db.label,
        measured=text(ours, cpu) + pg + (f", **{unexpected} unexpected answers**" if unexpected else ""),
        baseline="bare view: " + text(bare, bare_cpu),
        ratio=rate_ratio,
        ratio_label=f"{rate_ratio:.0%} req/s, {cpu_ratio:.1f}x CPU/req",
        target=f">= {rate_target:.0%} req/s or <= {cpu_target}x CPU/req",
        met=(rate_ratio >= rate_target or cpu_ratio <= cpu_target) and not unexpected,
        numbers={
            **{k: ours[k] for k in ("rate", "p50_ms", "p99_ms", "requests")},
            "cpu_ms": cpu,
            "pg_cpu_ms": ours.get("pg_cpu_ms"),
            "baseline_rate": bare["rate"],
            "baseline_cpu_ms": bare_cpu,
            "cpu_ratio": cpu_ratio,
            "ratio_target": rate_target,
            "cpu_target": cpu_target,
        },
    )


def http(run: Run, db: Database) -> list[Figure]:
    """GET /api/orders/:id, GET /api/orders (20 orders; then with a million more in the table) and POST
    /api/orders under wrk -t2 -c32, each right after the bare view on the same server.

    On a baseline checkout (run.label) the big table is left out: it measures the query, not the server.
    """
    seconds = 1 if run.quick else 10
    big = 5000 if run.quick else 1_000_000
    post_tickets = 3000 if run.quick else 30_000
    url = db.scratch("http")
    env = run.env(url)
    user = object_id("6a", 1)
    orders = run.django(env, "orders", user, "6b", 20)["orders"]
    run.django(env, "tickets", "6c", post_tickets)
    cookie = session_cookie(user)
    # At INFO, as deployed: every request writes its access line (gunicorn's before, the app's now).
    server, base = run.api_server({**env, "LOG_LEVEL": "INFO"})
    dbname = url.rsplit("/", 1)[-1]
    posts = iter(f"{object_id('6c', n)}\t{session_cookie(object_id('6e', n))}" for n in range(post_tickets))

    def post_file(count: int) -> str:
        path = run.workdir / f"posts-{time.monotonic_ns()}.tsv"
        path.write_text("\n".join(line for _, line in zip(range(count), posts, strict=False)) + "\n")
        return str(path)

    def measure(path: str, *args: str, warm: bool = True) -> dict:
        if warm and not run.quick:
            wrk(base + path, *args, seconds=1)
        before = postgres_backends_cpu(dbname) if db.kind == "postgres" else {}
        result = wrk(base + path, *args, seconds=seconds, cpu_of=server.pid)
        if not result["requests"]:
            raise RuntimeError(f"no answer from {path} within {seconds} s:\n{server.log_tail()}")
        if db.kind == "postgres":
            after = postgres_backends_cpu(dbname)
            spent = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
            result["pg_cpu_ms"] = spent / result["requests"] * 1000
        server.check_alive()
        return result

    def pair(path: str, *args: str, warm: bool = True) -> tuple[dict, dict]:
        bare = measure("/bench/bare", "get")
        return measure(path, *args, warm=warm), bare

    label = f"{db.label}{run.label}"
    figures = []
    if run.quick:  # one warm-up for all: the first requests of a worker import and connect
        for path in ("/bench/bare", f"/api/orders/{orders[0]}", "/api/orders"):
            wrk(base + path, "get", cookie, seconds=1)
    log(f"{label}: GET /api/orders/:id")
    ours, bare = pair(f"/api/orders/{orders[0]}", "get", cookie)
    figures.append(http_figure("GET /api/orders/:id" + run.label, db, ours, bare, 0.40, 2.5))
    log(f"{label}: GET /api/orders (20 orders)")
    ours, bare = pair("/api/orders", "get", cookie)
    small = http_figure("GET /api/orders (20 orders)" + run.label, db, ours, bare, 0.33, 3)
    figures.append(small)
    log(f"{label}: POST /api/orders")
    if not run.quick:
        wrk(base + "/api/orders", "post", post_file(post_tickets // 10), seconds=1)
    ours, bare = pair("/api/orders", "post", post_file(post_tickets), warm=False)
    figures.append(http_figure("POST /api/orders" + run.label, db, ours, bare, 0.20, 5))
    if run.label:
        run.stop(server)
        db.release(url)
        return figures
    log(f"{label}: inserting {big} orders of other users")
    loaded = run.django(env, "bulk-orders", str(big), timeout=1800)
    log(f"{label}: inserted in {loaded['seconds']:.1f} s; GET /api/orders again")
    ours, bare = pair("/api/orders", "get", cookie)
    large = http_figure(f"GET /api/orders (20 orders, {big:,} others in the table)", db, ours, bare, 0.33, 3)
    versus = large.numbers["rate"] / large.numbers["baseline_rate"] / small.ratio
    large.target = "within 10% of the small table's req/s (both as a share of bare)"
    large.ratio_label += f"; {versus:.0%} of the small table's"
    large.met = versus >= 0.9 and large.met is not None
    large.numbers["versus_small"] = versus
    large.numbers["bulk_insert_s"] = loaded["seconds"]
    figures.append(large)
    run.stop(server)
    db.release(url)
    return figures


def flash_sale(run: Run, db: Database) -> list[Figure]:
    """64 buyers on their own connections reserve random tickets of a pool of 200 until it is gone."""
    pool, buyers = (50, 16) if run.quick else (200, 64)
    url = db.scratch("flash")
    env = run.env(url)
    run.django(env, "tickets", "6f", pool)
    server, base = run.api_server({**env, "LOG_LEVEL": "INFO"})
    pool_file = run.workdir / "flash-pool.txt"
    pool_file.write_text("\n".join(object_id("6f", n) for n in range(pool)) + "\n")
    buyers_file = run.workdir / "flash-buyers.txt"
    buyers_file.write_text("\n".join(session_cookie(object_id("6d", n)) for n in range(buyers)) + "\n")
    bare = wrk(base + "/bench/bare", "get", seconds=2 if run.quick else 5, threads=buyers, connections=buyers)
    log(f"{db.label}: flash sale, {pool} tickets, {buyers} buyers")
    done_file = run.workdir / "flash-done.txt"
    done_file.write_text("")

    def every_buyer_done() -> bool:
        return len(done_file.read_text().split()) >= buyers

    sale = wrk(
        base + "/api/orders",
        "flash",
        str(pool_file),
        str(buyers_file),
        str(done_file),
        seconds=120,
        threads=buyers,
        connections=buyers,
        until=every_buyer_done,
    )
    sold = db.query(
        url,
        "SELECT count(*) FROM orders_order WHERE status IN ('created', 'awaiting:payment', 'complete')",
    )[0][0]
    run.stop(server)
    db.release(url)
    sell_out = sale["last_201"] - sale["first_request"] if sale["c201"] else float("nan")
    ratio = sale["rate"] / bare["rate"]
    # Socket errors are not counted against it: wrk reports the connections it drops when stopped.
    ok = sale["c201"] == pool == sold and sale["c5xx"] == 0
    return [
        Figure(
            scenario=f"Flash sale: {pool} tickets, {buyers} buyers{run.label}",
            database=db.label,
            measured=(
                f"sold out in {num(sell_out)} s; {sale['c201']} x 201, {sale['c5xx']} x 5xx ({sale['c503']} of them 503), "
                f"{sale['c_reserved']} x 400 already reserved, "
                f"{sale['c_other'] + sale['c400'] - sale['c_reserved']} other, {sale['socket_errors']} socket errors; {sale['requests']} requests at {sale['rate']:.0f} req/s, p99 {num(sale['p99_ms'])} ms"
            ),
            baseline=f"bare view, same {buyers} connections: {bare['rate']:.0f} req/s",
            ratio=ratio,
            ratio_label=f"{ratio:.0%} req/s",
            target=f"exactly {pool} x 201, no 5xx",
            met=ok,
            numbers={**sale, "sell_out_s": sell_out, "sold_in_db": sold, "baseline_rate": bare["rate"]},
        )
    ]


# --- events ----------------------------------------------------------------------------------------


def replica_progress(db: Database, url: str) -> tuple[int, int]:
    count, versions = db.query(url, "SELECT count(*), coalesce(sum(version), 0) FROM tickets_replica_ticket")[0]
    return int(count), int(versions)


def catch_up(run: Run, db: Database) -> list[Figure]:
    """20,000 ticket:created waiting on the stream when run_listeners starts, against a raw pull consumer."""
    n = 500 if run.quick else 20_000
    url = db.scratch("catchup")
    nats_child, nats_url = run.nats_server("nats-catchup")
    nats_call(add_tickets_stream, nats_url)
    events = [
        {"id": object_id("7a", i), "version": 0, "title": f"show {i}", "price": 20, "userId": object_id("7b", i)}
        for i in range(n)
    ]
    messages = [("ticket:created", json.dumps(e).encode(), f"catchup-{i}") for i, e in enumerate(events)]
    nats_call(publish_all, nats_url, messages)
    log(f"{db.label}: replica catch-up of {n} ticket:created")
    worker = run.worker(run.env(url, nats_url))
    first = run_until(lambda: replica_progress(db, url)[0] > 0, worker, 60, every=0.01)
    cpu_first = process_tree_cpu(worker.pid)
    limit = 60 if run.quick else 180
    try:
        last, done = run_until(lambda: replica_progress(db, url)[0] >= n, worker, limit, every=0.01), n
    except RuntimeError:  # too slow to wait for: the rate over what it did in the time
        last, done = time.perf_counter(), replica_progress(db, url)[0]
    # The worker's CPU over the same span, per event: the figure a loaded machine disturbs least.
    cpu_per_event_ms = (process_tree_cpu(worker.pid) - cpu_first) / max(done, 1) * 1000
    exit_code = run.stop(worker, min_age=1 if run.quick else 3)

    async def raw(js: Any) -> float:
        subscription = await js.pull_subscribe("ticket:created", durable="bench-raw", stream="tickets")
        acked, started = 0, None
        while acked < n:
            batch = await subscription.fetch(256, timeout=10)
            started = started or time.perf_counter()
            for msg in batch:
                await msg.ack()
            acked += len(batch)
        await js._nc.flush()
        return time.perf_counter() - started

    raw_seconds = nats_call(raw, nats_url)
    run.stop(nats_child)
    db.release(url)
    figure = rate_figure(
        f"Replica catch-up: {n} ticket:created",
        db,
        done,
        last - first,
        raw_seconds * done / n,
        "raw pull consumer (fetch 256, ack)",
        0.25,
    )
    figure.measured += f", worker CPU {cpu_per_event_ms:.3f} ms/event"
    figure.numbers["cpu_ms_per_event"] = cpu_per_event_ms
    if done < n:
        figure.measured += f"; **stopped at the {limit} s limit with {done} of {n} applied**"
    if exit_code != 0:
        figure.measured += f"; **run_listeners exited {exit_code} on SIGTERM**"
        figure.met = False
    return [figure]


def stored_at(value: Any) -> float:
    """A JetStream timestamp (RFC 3339 with nanoseconds, or a datetime) in epoch seconds."""
    if isinstance(value, str):
        head, _, fraction = value.rstrip("Z").partition(".")
        value = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC).timestamp() + float(f"0.{fraction or 0}")
        return value
    return value.timestamp()


def run_until(check: Callable[[], bool], child: Any, timeout: float, every: float = 0.05) -> float:
    """perf_counter when `check()` first holds, polling; the child must stay alive meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check_alive()
        with contextlib.suppress(Exception):
            if check():
                return time.perf_counter()
        time.sleep(every)
    raise RuntimeError(f"not reached within {timeout:.0f} s")


def relay(run: Run, db: Database) -> list[Figure]:
    """10,000 outbox rows written before run_listeners starts, against js.publish_async of the same payloads."""
    n = 500 if run.quick else 10_000
    url = db.scratch("relay")
    nats_child, nats_url = run.nats_server("nats-relay")
    env = run.env(url, nats_url)
    payloads = [
        {
            "id": object_id("8a", i),
            "version": 0,
            "status": "created",
            "userId": object_id("8b", i % 100),
            "expiresAt": "2030-01-01T00:00:00.000Z",
            "ticket": {"id": object_id("8c", i), "price": 20},
        }
        for i in range(n)
    ]
    payload_file = run.workdir / "relay-payloads.json"
    payload_file.write_text(json.dumps(payloads))
    run.django(env, "outbox", "order:created", str(payload_file))

    async def stored(js: Any) -> int:
        name = await js.find_stream_name_by_subject("order:created")
        return (await js.stream_info(name)).state.messages

    async def span(js: Any, first: int, last: int) -> float:
        """Seconds between the server's timestamps of two stored messages: no polling granularity."""
        name = await js.find_stream_name_by_subject("order:created")
        times = [stored_at((await js.get_msg(name, seq)).time) for seq in (first, last)]
        return times[1] - times[0]

    log(f"{db.label}: relay of {n} outbox rows")
    worker = run.worker(env)
    run_until(lambda: nats_call(stored, nats_url) >= n, worker, 600)
    exit_code = run.stop(worker, min_age=1 if run.quick else 3)
    messages = [("order:created", json.dumps(p).encode(), f"raw-{p['id']}") for p in payloads]
    nats_call(publish_all, nats_url, messages)
    relay_seconds, raw_seconds = nats_call(span, nats_url, 1, n), nats_call(span, nats_url, n + 1, 2 * n)
    run.stop(nats_child)
    db.release(url)
    figure = rate_figure(f"Relay: {n} outbox rows", db, n, relay_seconds, raw_seconds, "js.publish_async", 0.5)
    if exit_code != 0:
        figure.measured += f"; **run_listeners exited {exit_code} on SIGTERM**"
        figure.met = False
    return [figure]


def latency(run: Run, db: Database) -> list[Figure]:
    """Commit-to-stream latency of order:created at 25 orders/s, then during a burst of 2,000 orders."""
    orders, burst = (50, 100) if run.quick else (500, 2000)
    url = db.scratch("latency")
    nats_child, nats_url = run.nats_server("nats-latency")
    env = run.env(url, nats_url)
    worker = run.worker(env)
    log(f"{db.label}: commit-to-stream latency, {orders} orders at 25/s, then a burst of {burst}")
    result = run.django(
        env, "latency", "--nats", nats_url, "--orders", str(orders), "--interval", "0.04", "--burst", str(burst)
    )
    worker.check_alive()
    run.stop(worker)
    run.stop(nats_child)
    db.release(url)
    outbox, direct, flood = result["outbox"], result["direct"], result["burst"]
    target = 15.0 if db.kind == "postgres" else 50.0
    missing = result["paced_missing"] + result["burst_missing"]
    figures = [
        Figure(
            scenario="Commit-to-stream latency of order:created at 25 orders/s",
            database=db.label,
            measured=f"p50 {num(outbox['p50'])} / p99 {num(outbox['p99'])} ms ({outbox['n']} orders)",
            baseline=f"same commit, then js.publish: p50 {num(direct['p50'])} / p99 {num(direct['p99'])} ms",
            ratio_label=f"p99 {outbox['p99'] / direct['p99']:.1f}x the direct publish's",
            target=f"p99 <= {target:.0f} ms",
            met=outbox["p99"] <= target and not result["paced_missing"],
            numbers={**{f"outbox_{k}": v for k, v in outbox.items()}, "direct_p99": direct["p99"], "limit_ms": target},
        )
    ]
    creates = burst / result["burst_create_s"]
    burst_target = 500.0 if db.kind == "sqlite" else None
    figures.append(
        Figure(
            scenario=f"Commit-to-stream latency during a {burst}-order burst",
            database=db.label,
            measured=(
                f"p50 {num(flood['p50'])} / p99 {num(flood['p99'])} ms; {creates:.0f} creates/s, all on the stream "
                f"{result.get('burst_drain_s', float('nan')):.2f} s after the first"
            ),
            baseline="(the paced figure above)",
            target=f"p99 <= {burst_target:.0f} ms" if burst_target else "(none; for information)",
            met=(flood["p99"] <= burst_target and not missing) if burst_target else None,
            numbers={**{f"burst_{k}": v for k, v in flood.items()}, "limit_ms": burst_target},
        )
    )
    if missing:
        figures[-1].measured += f"; **{missing} messages never arrived**"
    return figures


def convergence(run: Run, db: Database) -> list[Figure]:
    """10,000 shuffled ticket events (10% duplicates) while the worker is SIGKILLed three times."""
    total = 550 if run.quick else 10_000
    versions = 10
    tickets = round(total / 1.1) // versions
    rng = random.Random(7)
    events = []
    for t in range(tickets):
        for v in range(versions):
            body = {
                "id": object_id("9a", t),
                "version": v,
                "title": f"show {t} v{v}",
                "price": 10 + v,
                "userId": object_id("9b", t),
            }
            events.append(("ticket:created" if v == 0 else "ticket:updated", json.dumps(body).encode()))
    # Duplicates as a publisher that retried would send them: the same event under a new message id.
    events += [rng.choice(events) for _ in range(total - len(events))]
    rng.shuffle(events)
    url = db.scratch("convergence")
    nats_child, nats_url = run.nats_server("nats-convergence")
    nats_call(add_tickets_stream, nats_url)
    nats_call(publish_all, nats_url, [(s, d, f"conv-{i}") for i, (s, d) in enumerate(events)])
    # --quick is a smoke run: a short ack wait, so the redeliveries after each kill do not take 10 s.
    env = run.env(url, nats_url, **({"EVENT_ACK_WAIT_SECONDS": "2"} if run.quick else {}))
    expected = {
        (object_id("9a", t), versions - 1, f"show {t} v{versions - 1}", float(10 + versions - 1))
        for t in range(tickets)
    }

    def converged() -> bool:
        rows = db.query(url, "SELECT id, version, title, price FROM tickets_replica_ticket")
        return {(i, int(v), title, float(p)) for i, v, title, p in rows} == expected

    log(f"{db.label}: convergence of {total} shuffled events with 3 SIGKILLs")
    for kill in range(3):
        worker = run.worker(env, name=f"run_listeners-{kill}")
        at_start = replica_progress(db, url)
        with contextlib.suppress(RuntimeError):  # no progress within 15 s (or nothing left): kill it anyway
            run_until(lambda start=at_start: replica_progress(db, url) != start or converged(), worker, 15, every=0.01)
        time.sleep(rng.uniform(0.05, 0.3))
        worker.kill()
        run.children.remove(worker)
    already = converged()
    restarted = time.perf_counter()
    worker = run.worker(env, name="run_listeners-last")
    limit = 15 if run.quick else 120
    try:
        seconds = run_until(converged, worker, limit, every=0.1) - restarted
    except RuntimeError:
        seconds = float("nan")
    count, _ = replica_progress(db, url)
    exit_code = run.stop(worker, min_age=1 if run.quick else 3)
    run.stop(nats_child)
    db.release(url)
    if exit_code != 0:
        log(f"run_listeners exited {exit_code} on SIGTERM")
    return [
        Figure(
            scenario=f"Convergence: {total} shuffled ticket events, 10% duplicates, 3 SIGKILLs",
            database=db.label,
            measured=(
                f"converged {num(seconds)} s after the last restart"
                + (" (it had converged before the last kill)" if already else "")
                if seconds == seconds
                else f"**not converged within {limit} s** ({count} of {tickets} tickets present)"
            ),
            target="<= 10 s",
            met=seconds <= 10 and exit_code == 0 and not already,
            numbers={"seconds": seconds, "limit_s": 10, "tickets": tickets, "events": total},
        )
    ]


SCENARIOS: dict[str, Callable[[Run, Database], list[Figure]]] = {
    "http": http,
    "flash": flash_sale,
    "catchup": catch_up,
    "relay": relay,
    "latency": latency,
    "convergence": convergence,
}


# Scenarios that also run on a baseline checkout (--baseline): they measure the front door.
SERVER_SCENARIOS = ("http", "flash")


def versus_baseline(ours: list[Figure], theirs: list[Figure], suffix: str) -> list[Figure]:
    """This checkout's default server against the baseline checkout's, same run, same database.

    Targets: CPU per request of GET :id, the list and POST at least 30% below the baseline's; the
    flash sale sells exactly the pool with no 5xx, and sells out faster.
    """
    baseline = {f.scenario.removesuffix(suffix): f for f in theirs}
    figures = []
    for figure in ours:
        other = baseline.get(figure.scenario)
        if other is None:
            continue
        if "cpu_ms" in figure.numbers:
            ratio = figure.numbers["cpu_ms"] / other.numbers["cpu_ms"]
            rate = figure.numbers["rate"] / other.numbers["rate"]
            figures.append(
                Figure(
                    scenario=f"{figure.scenario}: CPU/req against{suffix}",
                    database=figure.database,
                    measured=f"{num(figure.numbers['cpu_ms'])} ms CPU/req, {figure.numbers['rate']:.0f} req/s",
                    baseline=f"{suffix.strip(' []')}: {num(other.numbers['cpu_ms'])} ms CPU/req, "
                    f"{other.numbers['rate']:.0f} req/s",
                    ratio=ratio,
                    ratio_label=f"{ratio:.2f}x CPU/req, {rate:.2f}x req/s",
                    target="<= 0.70x CPU/req",
                    met=ratio <= 0.70,
                    numbers={"cpu_ratio": ratio, "rate_ratio": rate, "cpu_target": 0.70},
                )
            )
        elif "sell_out_s" in figure.numbers:
            mine, theirs_s = figure.numbers["sell_out_s"], other.numbers["sell_out_s"]
            ratio = mine / theirs_s if theirs_s == theirs_s and theirs_s else float("nan")
            figures.append(
                Figure(
                    scenario=f"{figure.scenario}: sell-out against{suffix}",
                    database=figure.database,
                    measured=f"sold out in {num(mine)} s, {figure.numbers['c201']} x 201, {figure.numbers['c5xx']} x 5xx",
                    baseline=f"{suffix.strip(' []')}: {num(theirs_s)} s, {other.numbers['c201']} x 201, "
                    f"{other.numbers['c5xx']} x 5xx",
                    ratio=ratio,
                    ratio_label=f"{ratio:.2f}x the time",
                    target="faster, exactly the pool, no 5xx",
                    met=bool(figure.met) and ratio < 1,
                    numbers={"time_ratio": ratio},
                )
            )
    return figures
