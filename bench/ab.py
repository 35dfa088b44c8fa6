"""The A/B scenarios, run when --only names them: variants measured in turns, round by round, each round's
figures as ratios to the first variant's of the same round, and the medians of those reported."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from itertools import islice

from bench.harness import USER, Database, Figure, Run, cookie, lines_file, log, num, post_line

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


def ab_figures(title: str, db: Database, results: Rounds, units: str, judge: Callable, pg: bool = False) -> list:
    """Per measure and variant after the first: medians of the rounds and of their ratios to the first's rounds;
    `judge(variant, what, cpu_ratio, unexpected)` gives (target, met, extra text)."""
    (base_name, base), (rate_unit, cpu_unit), figures = next(iter(results.items())), units.split(", "), []
    median = statistics.median
    for what, base_rounds in base.items():
        base_text = f"{base_name}: {median(r['rate'] for r in base_rounds):,.0f} {rate_unit}, "
        base_text += f"{num(median(r['cpu'] for r in base_rounds))} {cpu_unit}"
        for variant, mine in list(results.items())[1:]:
            pairs = list(zip(mine[what], base_rounds, strict=True))
            cpu_ratios = [m["cpu"] / b["cpu"] for m, b in pairs]
            cpu_ratio, rate_ratio = median(cpu_ratios), median(m["rate"] / b["rate"] for m, b in pairs)
            rate, cpu, pg_ms = (median(r.get(k, 0) for r in mine[what]) for k in ("rate", "cpu", "pg"))
            unexpected = sum(m.get("unexpected", 0) + b.get("unexpected", 0) for m, b in pairs)
            target, met, extra = judge(variant, what, cpu_ratio, unexpected)
            text = f"{rate:,.0f} {rate_unit}, {num(cpu)} {cpu_unit}" + (f", PostgreSQL backends {num(pg_ms)} ms" * pg)
            text += f" (median of {len(pairs)} rounds; CPU ratio per round {', '.join(f'{r:.2f}' for r in cpu_ratios)})"
            text += extra + (f", **{unexpected} unexpected answers**" if unexpected else "")
            label = f"{rate_ratio:.0%} {rate_unit}, {cpu_ratio:.2f}x {cpu_unit.split()[-1]}"
            numbers = {"rate": rate, "cpu": cpu, "cpu_ratio": cpu_ratio, "cpu_ratios": cpu_ratios, "rounds": mine[what]}
            scenario = f"{title}, {what}: {variant}"
            figures.append(Figure(scenario, db.label, text, base_text, rate_ratio, label, target, met, numbers))
    return figures


def measured(_variant: str, _what: str, _cpu_ratio: float, _unexpected: int) -> tuple[str, None, str]:
    return "measured", None, ""


def tracing(run: Run, db: Database) -> list[Figure]:
    """GET /api/orders/:id and POST /api/orders under wrk -t2 -c32 on five servers in turns: the A/B baseline's code,
    twice (the second the A/A control: what noise alone does); this code with no OTEL_* set (the default); the
    same with every request carrying a traceparent (propagated, nothing recorded); and with OTLP export on to a
    receiver in the bench process (every request traced). CPU per request is the server's process tree's."""
    from devtools.otlp_sink import OtlpSink

    seconds, count, tickets = (2, 2, 4000) if run.quick else (5, 6, 12_000)
    spec, code = run.ab("bd24c03")
    base, sink = Run(code, run.workdir, run.quick), OtlpSink().start()
    run.processes.cleanups.append(sink.stop)
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
    variants = {  # label: (code, environment, whether requests carry a traceparent)
        f"baseline code ({spec})": (base, {}, False),
        f"baseline code ({spec}) again, the A/A control": (base, {}, False),
        "tracing off (no OTEL_* set)": (run, {}, False),
        "tracing off, requests carry traceparent": (run, {}, True),
        "tracing on: OTLP export, requests carry traceparent": (run, on, True),
    }
    sites, posts, get = {}, {}, ("get", cookie(USER))
    try:
        for i, (label, (where, extra, _)) in enumerate(variants.items()):
            # Each seeds through its own code, ids of its own.
            sites[label] = site = where.site(db, f"tracing_{i}", (f"6c{i}", tickets), (f"6b{i}", 1), **extra)
            posts[label] = (post_line(f"6c{i}", n) for n in range(tickets))
            site.wrk(f"/api/orders/{site.order}", *get, seconds=1)  # imports, connections

        def measure(label: str) -> dict[str, dict]:
            site, env = sites[label], {"BENCH_TRACEPARENT": TRACEPARENT} if variants[label][2] else {}
            post = ("post", lines_file(run.workdir / "posts.tsv", islice(posts[label], tickets // count)))
            paths = {
                "GET /api/orders/:id": (f"/api/orders/{site.order}", get),
                "POST /api/orders": ("/api/orders", post),
            }
            results = {what: site.wrk(path, *args, seconds=seconds, env=env) for what, (path, args) in paths.items()}
            return {what: r | {"unexpected": r["requests"] - r["c2xx"]} for what, r in results.items()}

        results = in_turns(list(variants), measure, count)
    finally:
        base.processes.close()  # SIGTERM: the batch processor exports what it holds
        run.processes.close()
    labels = list(variants)
    spans, traced = len(sink.received()), sum(r["requests"] for rounds in results[labels[-1]].values() for r in rounds)

    def judge(label: str, what: str, cpu_ratio: float, unexpected: int) -> tuple[str, bool | None, str]:
        if label == labels[1]:
            return "the noise (A/A)", None, ""
        if label == labels[-1]:
            return "measured", None, f"; {spans} spans exported in all, {spans / (traced or 1):.1f} per request"
        # The A/A's rounds scatter around 1 by noise alone; their upper quartile is how far noise reaches.
        control = [r["cpu"] / b["cpu"] for r, b in zip(results[labels[1]][what], results[labels[0]][what], strict=True)]
        bound = max(1.05, statistics.quantiles(control, n=4)[2])
        return f"<= {bound:.2f}x CPU/req (1.05, or the A/A's upper quartile)", cpu_ratio <= bound and not unexpected, ""

    return ab_figures("Tracing A/B", db, results, "req/s, ms CPU/req", judge)


def idempotency(run: Run, db: Database) -> list[Figure]:
    """POST /api/orders without an Idempotency-Key, with a new key each, and one request replayed again and again,
    in turns under wrk -t2 -c32 on one server: CPU per request of its processes and of PostgreSQL's backends."""
    seconds, count, tickets = (1, 2, 4000) if run.quick else (5, 3, 40_000)
    site, fresh = run.site(db, "idempotency", ("7c", tickets)), iter(range(tickets - 1))
    keys = {"no header": lambda n: "", "new key": lambda n: f"key-{n}", "replay": lambda n: f"replay-{n}"}

    def post(kind: str, requests: int, seconds: float) -> dict:
        """A file of one line (the replay) is sent again and again: the first creates, the rest replay."""
        picked = [tickets - 1] if kind == "replay" else list(islice(fresh, requests))
        path = lines_file(run.workdir / "idempotency.tsv", (post_line("7c", n, keys[kind](n)) for n in picked))
        result = site.wrk("/api/orders", "post", path, seconds=seconds)
        # A new request that is not a 201 (the file ran out, an error) would not be the path measured.
        return result | {"unexpected": result["requests"] - result["replayed" if kind == "replay" else "c201"]}

    for kind in keys:  # every worker imports, connects and has seen each path once
        post(kind, 500, 1)
    per_round = tickets // (2 * (count + 1))
    results = in_turns(list(keys), lambda kind: {"POST /api/orders": post(kind, per_round, seconds)}, count)
    return ab_figures("Idempotency-Key", db, results, "req/s, ms CPU/req", measured, pg=db.kind == "postgres")


def decode(run: Run, db: Database) -> list[Figure]:
    """Decode and validation of events (parse_event) on the worker's mix in one process, this code's against the
    A/B baseline's messaging/events.py, in turns."""
    spec, code = run.ab("29d148c")
    events, count = (2000, 3) if run.quick else (20_000, 9)
    rounds = run.django(run.env(db.scratch("decode")), "decode", baseline=str(code), events=events, rounds=count)
    results = {f"messaging/events.py of {spec}": {"parse_event": rounds["baseline"]}}
    results["this code"] = {"parse_event": rounds["ours"]}
    return ab_figures("Event decode", db, results, "events/s, µs CPU/event", measured)


AB_SCENARIOS: dict[str, Callable[[Run, Database], list[Figure]]] = {
    "tracing": tracing,
    "idempotency": idempotency,
    "decode": decode,
}
