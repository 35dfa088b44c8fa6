"""The A/B scenarios, run when --only names them: variants measured in turns, round by round, each round's
figures as ratios to the first variant's of the same round, and the medians of those reported."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from bench.harness import Database, Figure, Run, cookie, lines_file, log, num, object_id, post_lines, wrk

# A sampled traceparent, as an instrumented ingress would send with every request.
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
Rounds = dict[str, dict[str, list[dict]]]  # variant -> what is measured -> a {rate, cpu[, pg, unexpected]} a round


def in_turns(variants: list[str], measure: Callable[[str], dict[str, dict]], count: int) -> Rounds:
    """`measure(variant)` for every variant, `count` times; every other round backwards, so none always goes first."""
    results: Rounds = {variant: {} for variant in variants}
    for turn in range(count):
        for variant in variants if turn % 2 == 0 else variants[::-1]:
            log(f"round {turn + 1}/{count}: {variant}")
            for what, figures in measure(variant).items():
                results[variant].setdefault(what, []).append(figures)
    return results


def served(result: dict, wanted: int | None = None, pg: bool = False) -> dict:
    """A wrk result as a round's figures: req/s, ms of CPU a request, the answers other than `wanted` (2xx)."""
    per, requests = 1000 / max(result["requests"], 1), result["requests"]
    out = {"rate": result["rate"], "cpu": result["cpu_s"] * per, "requests": requests}
    out["unexpected"] = requests - (result["c2xx"] if wanted is None else wanted)
    return out | ({"pg": result["pg_cpu_s"] * per} if pg else {})


def ab_figures(title: str, db: Database, results: Rounds, unit: tuple[str, str], judge: Callable) -> list[Figure]:
    """Per measure and variant after the first: medians of the rounds and of their ratios to the first's rounds;
    `judge(variant, what, cpu_ratio, unexpected)` gives (target, met, extra text)."""
    figures, (base_name, base), (rate_unit, cpu_unit) = [], next(iter(results.items())), unit
    for what, base_rounds in base.items():
        base_cpu, base_rate = (statistics.median(r[k] for r in base_rounds) for k in ("cpu", "rate"))
        for variant, mine in list(results.items())[1:]:
            rounds = mine[what]
            cpu_ratios = [m["cpu"] / b["cpu"] for m, b in zip(rounds, base_rounds, strict=True)]
            cpu_ratio = statistics.median(cpu_ratios)
            rate_ratio = statistics.median(m["rate"] / b["rate"] for m, b in zip(rounds, base_rounds, strict=True))
            cpu, rate = (statistics.median(r[k] for r in rounds) for k in ("cpu", "rate"))
            unexpected = sum(r.get("unexpected", 0) for r in [*rounds, *base_rounds])
            target, met, extra = judge(variant, what, cpu_ratio, unexpected)
            pg = statistics.median(r.get("pg", 0) for r in rounds)
            measured = (
                f"{rate:,.0f} {rate_unit}, {num(cpu)} {cpu_unit}"
                + (f", PostgreSQL backends {num(pg)} ms" if "pg" in rounds[0] else "")
                + f" (median of {len(rounds)} rounds; CPU ratio "
                f"per round {', '.join(f'{r:.2f}' for r in cpu_ratios)}){extra}"
                + (f", **{unexpected} unexpected answers**" if unexpected else "")
            )
            figures.append(
                Figure(
                    f"{title}, {what}: {variant}",
                    db.label,
                    measured,
                    f"{base_name}: {base_rate:,.0f} {rate_unit}, {num(base_cpu)} {cpu_unit}",
                    rate_ratio,
                    f"{rate_ratio:.0%} {rate_unit}, {cpu_ratio:.2f}x {cpu_unit.split()[-1]}",
                    target,
                    met,
                    {"rate": rate, "cpu": cpu, "cpu_ratio": cpu_ratio, "cpu_ratios": cpu_ratios, "rounds": rounds},
                )
            )
    return figures


def tracing(run: Run, db: Database) -> list[Figure]:
    """GET /api/orders/:id and POST /api/orders under wrk -t2 -c32 on five servers in turns: the A/B baseline's code,
    twice (the second the A/A control: what noise alone does); this code with no OTEL_* set (the default); the
    same with every request carrying a traceparent (propagated, nothing recorded); and with OTLP export on to a
    receiver in the bench process (every request traced). CPU per request is the server's process tree's."""
    from devtools.otlp_sink import OtlpSink

    seconds, count, tickets = (2, 2, 4000) if run.quick else (5, 6, 12_000)
    spec, code = run.ab("bd24c03")
    base, sink, user = Run(code, run.workdir, run.quick), OtlpSink().start(), object_id("6a", 1)
    run.processes.cleanups.append(sink.stop)
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
    variants = {  # label: (code, environment, whether requests carry a traceparent)
        f"baseline code ({spec})": (base, {}, False),
        f"baseline code ({spec}) again, the A/A control": (base, {}, False),
        "tracing off (no OTEL_* set)": (run, {}, False),
        "tracing off, requests carry traceparent": (run, {}, True),
        "tracing on: OTLP export, requests carry traceparent": (run, on, True),
    }
    servers = {}
    try:
        for i, (label, (where, extra, _)) in enumerate(variants.items()):
            env = where.env(db.scratch(f"tracing_{i}"), **extra)  # each seeds through its own code, ids of its own
            order = where.django(env, "orders", user=user, prefix=f"6b{i}", count=1)["orders"][0]
            where.django(env, "tickets", prefix=f"6c{i}", count=tickets)
            servers[label] = (*where.api(env), f"/api/orders/{order}", post_lines(f"6c{i}", f"6e{i}", tickets))
            wrk(servers[label][1] + servers[label][2], "get", cookie(user), seconds=1)  # imports, connections

        def measure(label: str) -> dict[str, dict]:
            (server, url, order, posts), traced = servers[label], variants[label][2]
            options = {
                "seconds": seconds,
                "cpu_of": server.pid,
                "env": {"BENCH_TRACEPARENT": TRACEPARENT} if traced else {},
            }
            get = wrk(url + order, "get", cookie(user), **options)
            post_file = lines_file(run.workdir / "posts.tsv", posts, tickets // count)
            post = wrk(url + "/api/orders", "post", post_file, **options)
            server.check_alive()
            return {"GET /api/orders/:id": served(get), "POST /api/orders": served(post)}

        results = in_turns(list(variants), measure, count)
    finally:
        base.processes.close()  # SIGTERM: the batch processor exports what it holds
        run.processes.close()
    spans, last = len(sink.received()), list(variants)[-1]
    traced = sum(r["requests"] for rounds in results[last].values() for r in rounds) or 1

    def judge(label: str, what: str, cpu_ratio: float, unexpected: int) -> tuple[str, bool | None, str]:
        if label == list(variants)[1]:
            return "the noise (A/A)", None, ""
        if label == last:
            return "measured", None, f"; {spans} spans exported in all, {spans / traced:.1f} per request"
        # The A/A's rounds scatter around 1 by noise alone; their upper quartile is how far noise reaches.
        control = [r["cpu"] / b["cpu"] for r, b in zip(*(results[v][what] for v in list(variants)[1::-1]), strict=True)]
        bound = max(1.05, statistics.quantiles(control, n=4)[2])
        met = cpu_ratio <= bound and not unexpected
        return f"<= {bound:.2f}x CPU/req (1.05, or the A/A's upper quartile)", met, ""

    return ab_figures("Tracing A/B", db, results, ("req/s", "ms CPU/req"), judge)


def idempotency(run: Run, db: Database) -> list[Figure]:
    """POST /api/orders without an Idempotency-Key, with a new key each, and one request replayed again and again,
    in turns under wrk -t2 -c32 on one server: CPU per request of its processes and of PostgreSQL's backends."""
    seconds, count, tickets = (1, 2, 4000) if run.quick else (5, 3, 40_000)
    env = run.env(url := db.scratch("idempotency"))
    run.django(env, "tickets", prefix="7c", count=tickets)
    server, base = run.api(env)
    pg, fresh = url.rsplit("/", 1)[-1] if db.kind == "postgres" else None, iter(range(tickets - 1))
    keys = {"no header": lambda n: "-", "new key": lambda n: f"key-{n}", "replay": lambda n: f"replay-{n}"}

    def post(kind: str, requests: int, seconds: float) -> dict:
        """A file of one line (the replay) is sent again and again: the first creates, the rest replay."""
        picked = [tickets - 1] if kind == "replay" else [n for _, n in zip(range(requests), fresh, strict=False)]
        lines = (f"{object_id('7c', n)}\t{cookie(object_id('7e', n))}\t{keys[kind](n)}" for n in picked)
        path = lines_file(run.workdir / "idempotency.tsv", lines)
        result = wrk(base + "/api/orders", "post", path, seconds=seconds, cpu_of=server.pid, pg=pg)
        server.check_alive()
        # A new request that is not a 201 (the file ran out, an error) would not be the path measured.
        return served(result, result["c_replayed" if kind == "replay" else "c201"], pg=bool(pg))

    for kind in keys:  # every worker imports, connects and has seen each path once
        post(kind, 500, 1)
    per_round = tickets // (2 * (count + 1))
    results = in_turns(list(keys), lambda kind: {"POST /api/orders": post(kind, per_round, seconds)}, count)
    return ab_figures("Idempotency-Key", db, results, ("req/s", "ms CPU/req"), lambda *_: ("measured", None, ""))


def decode(run: Run, db: Database) -> list[Figure]:
    """Decode and validation of events (parse_event) on the worker's mix in one process, this code's against the
    A/B baseline's messaging/events.py, in turns."""
    spec, code = run.ab("29d148c")
    env = run.env(db.scratch("decode"))
    events, count = (2000, 3) if run.quick else (20_000, 9)
    rounds = run.django(env, "decode", baseline=str(code), events=events, rounds=count)
    results = {
        f"messaging/events.py of {spec}": {"parse_event": rounds["baseline"]},
        "this code": {"parse_event": rounds["ours"]},
    }
    return ab_figures("Event decode", db, results, ("events/s", "µs CPU/event"), lambda *_: ("measured", None, ""))


AB_SCENARIOS: dict[str, Callable[[Run, Database], list[Figure]]] = {
    "tracing": tracing,
    "idempotency": idempotency,
    "decode": decode,
}
