"""The scenarios: each measures the service beside its baseline in the same run and returns Figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from itertools import islice
from math import nan
from pathlib import Path
from typing import Any

from bench.harness import USER, Database, Figure, Run, cookie, lines_file, log, num, object_id
from testsupport.processes import Child, process_tree_cpu
from testsupport.waiting import WaitTimeout, wait_until


def nats_call(fn: Callable[..., Any], url: str, *args: Any) -> Any:
    """`fn(js, *args)` on a fresh nats-py connection."""
    import nats

    async def main() -> Any:
        client = await nats.connect(servers=[url], connect_timeout=5)
        try:
            return await fn(client.jetstream(), *args)
        finally:
            await client.close()

    return asyncio.run(main())


async def publish(js: Any, messages: list[tuple[str, bytes, str]], tickets_stream: bool = False) -> float:
    """Publish (subject, data, msg id) with nats-py's window of acks outstanding: seconds taken. `tickets_stream`:
    first the stream the tickets service would own, which the worker consumes ticket events from."""
    from nats.js.api import StreamConfig

    if tickets_stream:
        await js.add_stream(StreamConfig(name="tickets", subjects=["ticket:created", "ticket:updated"]))
    started = time.perf_counter()
    for subject, data, msg_id in messages:
        await js.publish_async(subject, data, headers={"Nats-Msg-Id": msg_id})
    await asyncio.wait_for(js.publish_async_completed(), 120)
    return time.perf_counter() - started


async def stored(js: Any, messages: bool = False) -> Any:
    """How many messages the order:created stream holds (with `messages`: all of them, oldest first)."""
    name = await js.find_stream_name_by_subject("order:created")
    count = (await js.stream_info(name)).state.messages
    return [await js.get_msg(name, seq) for seq in range(1, count + 1)] if messages else count


def run_until(check: Callable[[], Any], child: Child, timeout: float, every: float = 0.05) -> float:
    """perf_counter when `check()` first holds (an error counts as not yet); `child` must stay alive meanwhile."""

    def done() -> float | None:
        child.check_alive()
        with contextlib.suppress(Exception):
            return check() and time.perf_counter()
        return None

    return wait_until(done, timeout=timeout, message=f"{child.name}'s progress", every=every)


def rate_figure(what: str, db: Database, n: int, seconds: float, base_s: float, base: str, target: float, extra: str):
    """`n` messages in `seconds` against the baseline's `base_s`; `extra`, what failed beside (missed if any)."""
    rate, base_rate = n / seconds, n / base_s
    text, ratio = f"{rate:.0f} msg/s ({n} in {seconds:.2f} s){extra}", rate / base_rate
    numbers = {"rate": rate, "baseline_rate": base_rate, "n": n, "ratio_target": target}
    base, label, goal = f"{base}: {base_rate:.0f} msg/s", f"{ratio:.0%} of baseline", f">= {target:.0%} of baseline"
    return Figure(what, db.label, text, base, ratio, label, goal, ratio >= target and "**" not in extra, numbers)


def served(r: dict) -> str:
    return f"{r['rate']:.0f} req/s, p50 {num(r['p50_ms'])} / p99 {num(r['p99_ms'])} ms, {num(r['cpu'])} ms CPU/req"


def http(run: Run, db: Database) -> list[Figure]:
    """GET /api/orders/:id, GET /api/orders (20 orders; then with a million more in the table) and POST /api/orders
    under wrk -t2 -c32, each right after the bare view on the same server, each after a second of warm-up."""
    seconds, big, tickets = (1, 5000, 3000) if run.quick else (10, 1_000_000, 30_000)
    site, get = run.site(db, "http", ("6c", tickets), ("6b", 20)), {"headers": [f"Cookie: {cookie(USER)}"]}
    # POST lines (bench.lua): a ticket of its own each, and the cookie of a buyer of its own.
    lines = (f"{object_id('6c', n)}\t{cookie(object_id('e6c', n))}" for n in range(tickets))
    warm = ("post", lines_file(run.workdir / "warm.tsv", islice(lines, tickets // 10)))
    post = ("post", lines_file(run.workdir / "posts.tsv", lines))
    figures: list[Figure] = []

    def measure(path: str, load: tuple = ("get",), warm: tuple = ("get",), **get: Any) -> dict:
        site.wrk(path, *warm, seconds=1, **get)
        if not (result := site.wrk(path, *load, seconds=seconds, **get))["requests"]:
            raise RuntimeError(f"no answer from {path} within {seconds} s:\n{site.api.log()[-3000:]}")
        return result

    def pair(scenario: str, path: str, targets: tuple[float, float], *loads: tuple, **get: Any) -> Figure:
        """The route at `path` (its load and warm-up: bench.lua's arguments) right after the bare view."""
        log(f"{db.label}{run.label}: {scenario}")
        bare, ours = measure("/bench/bare"), measure(path, *loads, **get)
        (rate_target, cpu_target), ratio, cpu_ratio = targets, ours["rate"] / bare["rate"], ours["cpu"] / bare["cpu"]
        text = served(ours) + (f", PostgreSQL backends {num(ours['pg'])} ms" if db.kind == "postgres" else "")
        if unexpected := ours["requests"] - ours["c2xx"]:
            text += f", **{unexpected} unexpected answers**"
        label, goal = (
            f"{ratio:.0%} req/s, {cpu_ratio:.1f}x CPU/req",
            f">= {rate_target:.0%} req/s or <= {cpu_target}x CPU/req",
        )
        met = (ratio >= rate_target or cpu_ratio <= cpu_target) and not unexpected
        numbers = {**ours, "bare": bare, "cpu_ratio": cpu_ratio, "ratio_target": rate_target, "cpu_target": cpu_target}
        base = "bare view: " + served(bare)
        figures.append(Figure(scenario + run.label, db.label, text, base, ratio, label, goal, met, numbers))
        return figures[-1]

    pair("GET /api/orders/:id", f"/api/orders/{site.order}", (0.40, 2.5), **get)
    small = pair("GET /api/orders (20 orders)", "/api/orders", (0.33, 3), **get)
    # A replay's warm-up is the request it then replays, so that its key is stored before the measurement.
    pair("POST /api/orders", "/api/orders", (0.20, 5), post, post if run.variant == "replay" else warm)
    if run.label:  # a baseline checkout leaves the big table out: it measures the query, not the server
        return figures
    log(f"{db.label}: inserting {big} orders of other users")
    loaded = run.django(site.env, "bulk_orders", count=big)
    large = pair(f"GET /api/orders (20 orders, {big:,} others in the table)", "/api/orders", (0.33, 3), **get)
    large.ratio_label += f"; {(versus := large.ratio / small.ratio):.0%} of the small table's"
    large.target, large.met = "within 10% of the small table's req/s (both as a share of bare)", versus >= 0.9
    large.numbers.update(versus_small=versus, bulk_insert_s=loaded["seconds"])
    return figures


def flash_sale(run: Run, db: Database) -> list[Figure]:
    """64 buyers on their own connections reserve random tickets of a pool of 200 until it is gone: each asks for
    every ticket in an order of its own until it is settled, and wrk stops once every buyer is through."""
    pool, buyers = (50, 16) if run.quick else (200, 64)
    site, clients = run.site(db, "flash", ("6f", pool)), {"threads": buyers, "connections": buyers}
    rng, cookies = random.Random(7), [cookie(object_id("6d", k)) for k in range(buyers)]
    picks = [rng.sample(range(pool), pool) for _ in range(buyers)]  # buyer k is wrk's thread k (bench.lua)
    lines = (f"{object_id('6f', picks[k][i])}\t{cookies[k]}" for i in range(pool) for k in range(buyers))
    bare = site.wrk("/bench/bare", "get", seconds=2 if run.quick else 5, **clients)
    log(f"{db.label}{run.label}: flash sale, {pool} tickets, {buyers} buyers")
    (done := run.workdir / "flash-done.txt").write_text("")
    until = {"until": lambda: len(done.read_text().split()) >= buyers, "seconds": 120}
    sale = site.wrk("/api/orders", "flash", lines_file(run.workdir / "flash.tsv", lines), str(done), **until, **clients)
    active = "SELECT count(*) FROM orders_order WHERE status IN ('created', 'awaiting:payment', 'complete')"
    sold, sell_out = db.query(site.url, active)[0][0], sale["last_201"] - sale["first_request"] if sale["c201"] else nan
    text = f"sold out in {num(sell_out)} s; {sale['c201']} x 201, {sale['c5xx']} x 5xx ({sale['c503']} of them 503), "
    text += f"{sale['reserved']} x 400 already reserved, {sale['c_other']} other, {sale['socket_errors']} socket "
    text += f"errors; {sale['requests']} requests at {sale['rate']:.0f} req/s, p99 {num(sale['p99_ms'])} ms"
    ratio, base = sale["rate"] / bare["rate"], f"bare view, same {buyers} connections: {bare['rate']:.0f} req/s"
    # Socket errors are not counted against it: wrk reports the connections it drops when stopped.
    met, goal = sale["c201"] == pool == sold and sale["c5xx"] == 0, f"exactly {pool} x 201, no 5xx"
    numbers = {**sale, "sell_out_s": sell_out, "sold_in_db": sold, "baseline_rate": bare["rate"]}
    title = f"Flash sale: {pool} tickets, {buyers} buyers{run.label}"
    return [Figure(title, db.label, text, base, ratio, f"{ratio:.0%} req/s", goal, met, numbers)]


def replica(db: Database, url: str) -> tuple[int, int]:
    """The replica's tickets and the sum of their versions: it changes whenever the worker applies an event."""
    count, versions = db.query(url, "SELECT count(*), coalesce(sum(version), 0) FROM tickets_replica_ticket")[0]
    return int(count), int(versions)


async def raw_consumer(js: Any, n: int) -> float:
    """Seconds a raw pull consumer of the tickets stream takes from its first fetch of 256 to its n-th ack."""
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


def catch_up(run: Run, db: Database) -> list[Figure]:
    """20,000 ticket:created waiting on the stream when run_listeners starts, against a raw pull consumer."""
    (n, limit), ticket = (500, 60) if run.quick else (20_000, 180), {"version": 0, "title": "show", "price": 20}
    url, nats_url, env = run.events(db, "catchup")
    events = [{"id": object_id("7a", i), **ticket, "userId": object_id("7b", i)} for i in range(n)]
    nats_call(publish, nats_url, [("ticket:created", json.dumps(e).encode(), e["id"]) for e in events], True)
    log(f"{db.label}: replica catch-up of {n} ticket:created")
    worker = run.worker(env)
    first = run_until(lambda: replica(db, url)[0] > 0, worker, 60, every=0.01)
    cpu_first = process_tree_cpu(worker.pid)
    try:
        last, done = run_until(lambda: replica(db, url)[0] >= n, worker, limit, every=0.01), n
    except WaitTimeout:  # too slow to wait for: the rate over what it did in the time
        last, done = time.perf_counter(), replica(db, url)[0]
    # The worker's CPU over the same span, per event: the figure a loaded machine disturbs least.
    cpu_ms = (process_tree_cpu(worker.pid) - cpu_first) / max(done, 1) * 1000
    extra = f", worker CPU {cpu_ms:.3f} ms/event" + run.drain(worker)
    extra += f"; **stopped at the {limit} s limit with {done} of {n} applied**" if done < n else ""
    raw_s, base = nats_call(raw_consumer, nats_url, n) * done / n, "raw pull consumer (fetch 256, ack)"
    figure = rate_figure(f"Replica catch-up: {n} ticket:created", db, done, last - first, raw_s, base, 0.25, extra)
    figure.numbers["cpu_ms_per_event"] = cpu_ms
    return [figure]


def relay(run: Run, db: Database) -> list[Figure]:
    """10,000 outbox rows (order_create's) written before run_listeners starts, against js.publish_async of the
    same payloads."""
    n = 500 if run.quick else 10_000
    _, nats_url, env = run.events(db, "relay")
    run.django(env, "seed", orders=("8c", n), user=object_id("8b", 1))

    async def again(js: Any) -> tuple[float, float]:
        """The relay's messages published again by js.publish_async; the spans of both, by the stream's clock."""
        relayed = await stored(js, messages=True)
        await publish(js, [("order:created", msg.data, f"raw-{i}") for i, msg in enumerate(relayed)])
        at = [msg.time.timestamp() for msg in await stored(js, messages=True)]
        return at[n - 1] - at[0], at[2 * n - 1] - at[n]

    log(f"{db.label}: relay of {n} outbox rows")
    worker = run.worker(env)
    run_until(lambda: nats_call(stored, nats_url) >= n, worker, 600)
    extra = run.drain(worker)
    relay_s, raw_s = nats_call(again, nats_url)
    return [rate_figure(f"Relay: {n} outbox rows", db, n, relay_s, raw_s, "js.publish_async", 0.5, extra)]


def latency(run: Run, db: Database) -> list[Figure]:
    """Commit-to-stream latency of order:created at 25 orders/s, then during a burst of 2,000 orders: each message's
    time on the stream minus the return of its order_create, against the same commit then published directly."""
    orders, burst = (50, 100) if run.quick else (500, 2000)
    _, nats_url, env = run.events(db, "latency")
    worker = run.worker(env)
    run_until(lambda: nats_call(stored, nats_url) is not None, worker, 60)  # the worker makes the stream first
    log(f"{db.label}: commit-to-stream latency, {orders} orders at 25/s, then a burst of {burst}")
    commits = run.django(env, "latency", nats=nats_url, orders=orders, interval=0.04, burst=burst)
    expected = sum(len(commits[kind]) for kind in ("warm-up", "paced", "direct", "burst"))
    with contextlib.suppress(WaitTimeout):  # what has not arrived by then is missing
        run_until(lambda: nats_call(stored, nats_url) >= expected, worker, 120)
    arrived = {}
    for msg in nats_call(stored, nats_url, True):
        direct = (msg.headers or {}).get("Nats-Msg-Id", "").startswith("bench-direct-")
        arrived["direct" if direct else "outbox", json.loads(msg.data)["id"]] = msg.time.timestamp()

    def spread(kind: str, path: str = "outbox") -> dict:
        ms = [(arrived[path, i] - at) * 1000 for i, at in commits[kind].items() if (path, i) in arrived]
        cuts = ms * 99 if len(ms) < 2 else statistics.quantiles(ms, n=100, method="inclusive")
        p50, p99 = (cuts[49], cuts[98]) if ms else (nan, nan)
        return {"n": len(ms), "p50": p50, "p99": p99, "text": f"p50 {num(p50)} / p99 {num(p99)} ms"}

    outbox, direct, flood = spread("paced"), spread("direct", "direct"), spread("burst")
    limit, burst_limit = (15.0, None) if db.kind == "postgres" else (50.0, 500.0)
    lost = len(commits["paced"]) + len(commits["direct"]) - outbox["n"] - direct["n"]
    label = f"p99 {outbox['p99'] / direct['p99']:.1f}x the direct publish's"
    numbers = {f"outbox_{k}": outbox[k] for k in ("n", "p50", "p99")} | {"direct_p99": direct["p99"]}
    numbers |= {"limit_ms": limit, "over_limit": outbox["p99"] / limit}
    text, base = f"{outbox['text']} ({outbox['n']} orders)", f"same commit, then js.publish: {direct['text']}"
    title, goal, met = "Commit-to-stream latency of order:created at 25 orders/s", f"p99 <= {limit:.0f} ms", not lost
    figures = [Figure(title, db.label, text, base, None, label, goal, met and outbox["p99"] <= limit, numbers)]
    lost += len(commits["burst"]) - flood["n"]
    drained = max([arrived.get(("outbox", i), nan) for i in commits["burst"]] or [nan]) - commits["burst_started"]
    text = f"{flood['text']}; {burst / commits['burst_create_s']:.0f} creates/s, all on the stream {drained:.2f} s "
    text += "after the first" + (f"; **{lost} messages never arrived**" if lost else "")
    goal = f"p99 <= {burst_limit:.0f} ms" if burst_limit else "(none; for information)"
    numbers = {f"burst_{k}": flood[k] for k in ("n", "p50", "p99")} | {"limit_ms": burst_limit}
    numbers["over_limit"] = flood["p99"] / burst_limit if burst_limit else None
    met = flood["p99"] <= burst_limit and not lost if burst_limit else None
    title = f"Commit-to-stream latency during a {burst}-order burst"
    return [*figures, Figure(title, db.label, text, "(the paced figure above)", None, "", goal, met, numbers)]


def convergence(run: Run, db: Database) -> list[Figure]:
    """10,000 shuffled ticket events (10% duplicates) while the worker is SIGKILLed three times."""
    total, versions = (550 if run.quick else 10_000), 10
    tickets, rng, last = round(total / 1.1) // versions, random.Random(7), versions - 1

    def event(t: int, v: int) -> tuple[str, bytes]:
        ticket = {"id": object_id("9a", t), "version": v, "title": f"show {t} v{v}", "price": 10 + v}
        subject = "ticket:updated" if v else "ticket:created"
        return subject, json.dumps({**ticket, "userId": object_id("9b", t)}).encode()

    events = [event(t, v) for t in range(tickets) for v in range(versions)]
    # Duplicates as a publisher that retried would send them: the same event under a new message id.
    events += [rng.choice(events) for _ in range(total - len(events))]
    rng.shuffle(events)
    # --quick is a smoke run: a short ack wait, so the redeliveries after each kill do not take 10 s.
    url, nats_url, env = run.events(db, "convergence", **({"EVENT_ACK_WAIT_SECONDS": "2"} if run.quick else {}))
    nats_call(publish, nats_url, [(s, d, f"conv-{i}") for i, (s, d) in enumerate(events)], True)
    expected = {(object_id("9a", t), last, f"show {t} v{last}", float(10 + last)) for t in range(tickets)}

    def converged() -> bool:
        rows = db.query(url, "SELECT id, version, title, price FROM tickets_replica_ticket")
        return {(i, int(v), title, float(p)) for i, v, title, p in rows} == expected

    log(f"{db.label}: convergence of {total} shuffled events with 3 SIGKILLs")
    for kill in range(3):
        worker, start = run.worker(env, name=f"run_listeners-{kill}"), replica(db, url)
        with contextlib.suppress(WaitTimeout):  # no progress within 15 s (or nothing left): kill it anyway
            run_until(lambda start=start: replica(db, url) != start or converged(), worker, 15, every=0.01)
        time.sleep(rng.uniform(0.05, 0.3))
        worker.kill()
        run.processes.children.remove(worker)
    already, restarted, limit, seconds = converged(), time.perf_counter(), 15 if run.quick else 120, nan
    worker = run.worker(env, name="run_listeners-last")
    with contextlib.suppress(WaitTimeout):
        seconds = run_until(converged, worker, limit, every=0.1) - restarted
    count, extra = replica(db, url)[0], run.drain(worker)
    text = f"converged {num(seconds)} s after the last restart" + " (it had converged before the last kill)" * already
    if seconds != seconds:
        text = f"**not converged within {limit} s** ({count} of {tickets} tickets present)"
    numbers = {"seconds": seconds, "limit_s": 10, "over_limit": seconds / 10, "tickets": tickets, "events": total}
    title, met = f"Convergence: {total} shuffled ticket events, 10% duplicates, 3 SIGKILLs", seconds <= 10
    return [Figure(title, db.label, text + extra, "", None, "", "<= 10 s", met and not already and not extra, numbers)]


def decode(run: Run, db: Database) -> list[Figure]:
    """parse_event on the worker's mix of events in one process, in turns: this code's against the baseline
    checkout's messaging/events.py (29d148c: the last before the pydantic models)."""
    if run.baseline is None:
        raise RuntimeError("decode measures against the --baseline checkout: give one")
    events, count = (2000, 3) if run.quick else (20_000, 9)
    env, baseline = run.env(db.scratch("decode")), str(run.baseline.code)
    result = run.django(env, "decode", baseline=baseline, events=events, count=count)
    ours, theirs, ratio = result["ours"], result["baseline"], result["rate_ratio"]
    text = f"{ours['rate']:,.0f} events/s, {num(ours['cpu'])} µs CPU/event (median of {count} rounds; CPU ratio per "
    text += f"round {', '.join(f'{r:.2f}' for r in result['cpu_ratios'])})"
    base = f"the baseline's: {theirs['rate']:,.0f} events/s, {num(theirs['cpu'])} µs CPU/event"
    label = f"{ratio:.0%} events/s, {statistics.median(result['cpu_ratios']):.2f}x CPU/event"
    return [
        Figure("Event decode, parse_event: this code", db.label, text, base, ratio, label, "measured", None, result)
    ]


def instructions(run: Run, db: Database) -> list[Figure]:
    """Instructions a request of GET :id, the list (20 orders) and POST, counted by callgrind in one process calling
    the WSGI application, this code's against the baseline checkout's: repeatable where CPU seconds are not (a
    shared machine, wrk on the same cores), and without either server's framing or the baseline's access lines."""
    if run.baseline is None:
        log("instructions: no baseline checkout (--baseline none), nothing to count against")
        return []
    count, warm = (20, 10) if run.quick else (200, 50)
    counted: dict[str, list[float]] = {}
    for this in (run, run.baseline):
        env = this.env(db.scratch(f"instructions{this.label}"), LOG_LEVEL="INFO")
        made = this.django(env, "seed", tickets=("6c", 2 * (warm + count)), orders=("6b", 20), user=USER)
        order_id = made["orders"][0]
        out = Path(tempfile.mkdtemp(prefix="callgrind-", dir=run.workdir))
        under = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p"]
        routes = this.django(env, "requests", under=under, order_id=order_id, tickets="6c", cookie=cookie(USER),
                             count=count, warm=warm)["routes"]  # fmt: skip
        dumps = sorted(out.glob("cg.*.*"), key=lambda path: int(path.suffix[1:]))
        for route, dump in zip(routes, dumps, strict=True):
            total = next(int(line.split()[1]) for line in dump.read_text().splitlines() if line.startswith("summary:"))
            counted.setdefault(route, []).append(total / count)
    figures = []
    for route, (ours, theirs) in counted.items():
        text, base = f"{ours / 1e6:.3f} M instructions/request ({count} requests)", f"baseline: {theirs / 1e6:.3f} M"
        numbers = {"instructions": ours, "baseline_instructions": theirs, "count": count}
        ratio = ours / theirs
        what = f"{route}: instructions against [baseline]"
        figures.append(Figure(what, db.label, text, base, ratio, f"{ratio:.2f}x", "<= 0.70x", ratio <= 0.70, numbers))
    return figures


SCENARIOS: dict[str, Callable[[Run, Database], list[Figure]]] = {
    "http": http,
    "flash": flash_sale,
    "instructions": instructions,
    "catchup": catch_up,
    "relay": relay,
    "latency": latency,
    "convergence": convergence,
}
ON_REQUEST = {"decode": decode}  # run only when --only names them
# Scenarios that also run on a baseline checkout (--baseline): they measure the front door.
SERVER_SCENARIOS = ("http", "flash")
# Scenarios that read the baseline checkout themselves (run.baseline).
WITH_BASELINE = ("instructions", "decode")


def versus_baseline(ours: list[Figure], theirs: list[Figure], suffix: str, cpu_target: float) -> list[Figure]:
    """This checkout's default server against the baseline checkout's, same run, same database: CPU per request of
    GET :id, the list and POST at most `cpu_target` times the baseline's; the flash sale sells exactly the pool
    with no 5xx, and sells out faster."""
    baseline, figures, name = {f.scenario.removesuffix(suffix): f for f in theirs}, [], suffix.strip(" []")
    for figure in ours:
        if (other := baseline.get(figure.scenario)) is None:
            continue
        pair = (figure.numbers, other.numbers)
        if "sell_out_s" in figure.numbers:
            ratio = pair[0]["sell_out_s"] / pair[1]["sell_out_s"] if pair[1]["sell_out_s"] else nan
            mine, them = (f"{num(n['sell_out_s'])} s, {n['c201']} x 201, {n['c5xx']} x 5xx" for n in pair)
            mine, label, target = f"sold out in {mine}", f"{ratio:.2f}x the time", "faster, exactly the pool, no 5xx"
            what, met, numbers = "sell-out", bool(figure.met) and ratio < 1, {"time_ratio": ratio}
        else:
            ratio, rate = (pair[0][key] / pair[1][key] for key in ("cpu", "rate"))
            mine, them = (f"{num(n['cpu'])} ms CPU/req, {n['rate']:.0f} req/s" for n in pair)
            what, label = "CPU/req", f"{ratio:.2f}x CPU/req, {rate:.2f}x req/s"
            target, met = f"<= {cpu_target:.2f}x CPU/req", ratio <= cpu_target
            numbers = {"cpu_ratio": ratio, "rate_ratio": rate, "cpu_target": cpu_target}
        scenario = f"{figure.scenario}: {what} against{suffix}"
        figures.append(Figure(scenario, figure.database, mine, f"{name}: {them}", ratio, label, target, met, numbers))
    return figures
