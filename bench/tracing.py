"""The tracing A/B: the API's CPU per request and req/s with tracing off and on, beside another checkout's code."""

from __future__ import annotations

import os
import statistics
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import JWT_KEY, REPO, Child, Database, Figure, Run, log, num, object_id, session_cookie, wrk

# A sampled traceparent, as an instrumented ingress would send with every request.
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def baseline_checkout(spec: str, workdir: Path) -> Path:
    """`spec` as a directory holding a checkout, or a git revision of this repository exported into `workdir`."""
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    target = workdir / f"baseline-{spec.replace('/', '_')}"
    if target.exists():  # exported for the previous database of the run
        return target
    target.mkdir()
    archive = workdir / "baseline.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), spec], cwd=REPO, check=True, timeout=120)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    archive.unlink()
    return target


@dataclass
class Variant:
    """One API server under test: which code, which environment, and whether its requests carry a traceparent."""

    name: str
    label: str
    code_run: Run
    extra_env: dict[str, str] = field(default_factory=dict)
    traceparent: bool = False
    server: Child | None = None
    base: str = ""
    url: str = ""
    order: str = ""
    posts: Iterator[str] = field(default_factory=lambda: iter(()))
    rounds: dict[str, list[dict]] = field(default_factory=dict)


def post_lines(ticket_prefix: str, user_prefix: str, count: int) -> Iterator[str]:
    """wrk's POST lines: each ticket once, each by a user of its own."""
    for n in range(count):
        yield f"{object_id(ticket_prefix, n)}\t{session_cookie(object_id(user_prefix, n))}"


def tracing_ab(run: Run, db: Database) -> list[Figure]:
    """GET /api/orders/:id and POST /api/orders under wrk -t2 -c32 on four servers, measured in turn, round by round:
    the baseline checkout's code; this code with no OTEL_* set (the default); the same with every request
    carrying a traceparent (context propagated, nothing recorded); and with OTLP export on to a receiver in
    the bench process (every request traced). CPU per request is the server's process tree's."""
    from devtools.otlp_sink import OtlpSink

    seconds = 2 if run.quick else 5
    rounds = 2 if run.quick else 6
    tickets = 4000 if run.quick else 12_000
    baseline = Run(code=baseline_checkout(run.baseline, run.workdir), workdir=run.workdir, quick=run.quick)
    sink = OtlpSink().start()
    user = object_id("6a", 1)
    cookie = session_cookie(user)
    variants = [
        Variant("baseline", f"baseline code ({run.baseline})", baseline),
        # A/A: the baseline's code on a second server, measured like the others: what noise alone does.
        Variant("again", f"baseline code ({run.baseline}) again, the A/A control", baseline),
        Variant("off", "tracing off (no OTEL_* set)", run),
        Variant("propagate", "tracing off, requests carry traceparent", run, traceparent=True),
        Variant(
            "on",
            "tracing on: OTLP export, requests carry traceparent",
            run,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint},
            traceparent=True,
        ),
    ]
    try:
        for index, variant in enumerate(variants):
            variant.url = db.scratch(f"tracing_{variant.name}")
            # Only the variant's own OTEL_* (none but for "on"), whatever the shell running the bench has.
            env = {k: v for k, v in variant.code_run.env(variant.url).items() if not k.startswith("OTEL_")}
            env.update(variant.extra_env)
            # Each seeds through its own code, with ids of its own.
            variant.order = variant.code_run.django(env, "orders", user, f"6b{index}", 1)["orders"][0]
            variant.code_run.django(env, "tickets", f"6c{index}", tickets)
            variant.posts = post_lines(f"6c{index}", f"6e{index}", tickets)
            variant.server, variant.base = variant.code_run.api_server(env)
        for variant in variants:  # warm every worker: imports, connections, the first queries
            wrk(variant.base + f"/api/orders/{variant.order}", "get", cookie, seconds=1)
        for turn in range(rounds):
            for variant in variants if turn % 2 == 0 else reversed(variants):  # no variant always goes first
                headers = {"BENCH_TRACEPARENT": TRACEPARENT} if variant.traceparent else {}
                log(f"{db.label}: tracing A/B round {turn + 1}/{rounds}: {variant.label}")
                get = wrk(
                    variant.base + f"/api/orders/{variant.order}",
                    "get",
                    cookie,
                    seconds=seconds,
                    cpu_of=variant.server.pid,
                    env=headers,
                )
                path = run.workdir / f"posts-{variant.name}-{turn}.tsv"
                batch = [line for _, line in zip(range(tickets // rounds), variant.posts, strict=False)]
                path.write_text("\n".join(batch) + "\n")
                post = wrk(
                    variant.base + "/api/orders",
                    "post",
                    str(path),
                    seconds=seconds,
                    cpu_of=variant.server.pid,
                    env=headers,
                )
                variant.server.check_alive()
                variant.rounds.setdefault("GET /api/orders/:id", []).append(get)
                variant.rounds.setdefault("POST /api/orders", []).append(post)
        for variant in variants:
            variant.code_run.stop(variant.server)  # SIGTERM: the batch processor exports what it holds
            variant.server = None
        exported = len(sink.received())
    finally:
        for variant in variants:
            if variant.server is not None:
                variant.code_run.stop(variant.server)
            if variant.url:
                db.release(variant.url)
        baseline.stop_all()
        sink.stop()
    return ab_figures(db, variants, seconds, exported)


# wrk's answer counts (bench/wrk/bench.lua), kept per round: what the "unexpected answers" were.
STATUS_COUNTS = ("c201", "c400", "c_reserved", "c5xx", "c503", "c_other", "socket_errors")


def cpu_ms(result: dict) -> float:
    return result["cpu_s"] / result["requests"] * 1000 if result["requests"] else float("nan")


def ab_figures(db: Database, variants: list[Variant], seconds: float, exported: int) -> list[Figure]:
    """Per endpoint and variant: the medians of the rounds, and of each round's ratio to the baseline's round.

    Tracing off is within noise when its median CPU ratio is at most 1.05, or at most the upper quartile
    of the A/A control's rounds (the baseline's code on a second server), whichever is larger.
    """
    figures = []
    base = variants[0]
    traced = sum(r["requests"] for rounds in variants[-1].rounds.values() for r in rounds) or 1

    def ratios(mine: list[dict], base_rounds: list[dict], of) -> list[float]:
        return [of(m) / of(b) for m, b in zip(mine, base_rounds, strict=True)]

    for endpoint in base.rounds:
        base_rounds = base.rounds[endpoint]
        base_cpu = statistics.median(cpu_ms(r) for r in base_rounds)
        base_rate = statistics.median(r["rate"] for r in base_rounds)
        control = next((v for v in variants if v.name == "again"), None)
        # The A/A's rounds scatter around 1 by noise alone; their upper quartile is how far noise reaches.
        noise = statistics.quantiles(ratios(control.rounds[endpoint], base_rounds, cpu_ms), n=4)[2] if control else 1.0
        bound = max(1.05, noise)
        for variant in variants[1:]:
            mine = variant.rounds[endpoint]
            cpu_ratios = ratios(mine, base_rounds, cpu_ms)
            cpu_ratio = statistics.median(cpu_ratios)
            rate_ratio = statistics.median(ratios(mine, base_rounds, lambda r: r["rate"]))
            cpu, rate = statistics.median(cpu_ms(m) for m in mine), statistics.median(m["rate"] for m in mine)
            unexpected = sum(m["requests"] - m["c2xx"] for m in [*mine, *base_rounds])
            kind = {"again": "control", "on": "on"}.get(variant.name, "off")
            target, met = {
                "control": ("the noise (A/A)", None),
                "on": ("measured", None),
                "off": (
                    f"<= {bound:.2f}x CPU/req (1.05, or the A/A's upper quartile)",
                    cpu_ratio <= bound and not unexpected,
                ),
            }[kind]
            figures.append(
                Figure(
                    scenario=f"Tracing A/B, {endpoint}: {variant.label}",
                    database=db.label,
                    measured=(
                        f"{rate:.0f} req/s, {num(cpu)} ms CPU/req (median of {len(mine)} rounds of {seconds:.0f} s; "
                        f"CPU ratio per round {', '.join(f'{r:.2f}' for r in cpu_ratios)})"
                        + (
                            f"; {exported} spans exported in all, {exported / traced:.1f} per request"
                            if kind == "on"
                            else ""
                        )
                        + (f", **{unexpected} unexpected answers**" if unexpected else "")
                    ),
                    baseline=f"{base.label}: {base_rate:.0f} req/s, {num(base_cpu)} ms CPU/req",
                    ratio=rate_ratio,
                    ratio_label=f"{rate_ratio:.0%} req/s, {cpu_ratio:.2f}x CPU/req",
                    target=target,
                    met=met,
                    numbers={
                        "rate": rate,
                        "cpu_ms": cpu,
                        "cpu_ratio": cpu_ratio,
                        "cpu_ratios": cpu_ratios,
                        "rate_ratio": rate_ratio,
                        "baseline_rate": base_rate,
                        "baseline_cpu_ms": base_cpu,
                        "noise_cpu_ratio": noise,
                        "requests": sum(m["requests"] for m in mine),
                        "spans_exported": exported if kind == "on" else None,
                        "rounds": [
                            {"cpu_ms": cpu_ms(m), "rate": m["rate"], **{k: m[k] for k in STATUS_COUNTS if k in m}}
                            for m in mine
                        ],
                        "baseline_rounds": [{"cpu_ms": cpu_ms(b), "rate": b["rate"]} for b in base_rounds],
                    },
                )
            )
    return figures


AB_SCENARIOS = {"tracing": tracing_ab}


# --- python -m bench.tracing: what the tracing hooks cost per call, in-process --------------------


def micro(repeat: int = 20_000) -> list[tuple[str, float, float]]:
    """(hook, µs per call with tracing off, µs per call with the SDK recording) for each hook on a request's
    or a message's path, timed in this process (no server, no database) with the cost of its scaffold
    (the call into it, a context made current around it) taken off: the floor under the A/B's noise."""
    import timeit

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ticketing_orders.settings")
    os.environ.setdefault("JWT_KEY", JWT_KEY)
    django.setup()
    from django.http import HttpResponse
    from django.test import RequestFactory
    from opentelemetry import context as otel_context
    from opentelemetry import propagate
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from core import tracing

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    factory = RequestFactory()
    plain, traced = factory.get("/api/orders"), factory.get("/api/orders", HTTP_TRACEPARENT=TRACEPARENT)
    response = HttpResponse()
    middleware = tracing.TracingMiddleware(lambda request: response)
    carrier = {"traceparent": TRACEPARENT}
    remote = propagate.extract(carrier)

    def in_trace(fn):
        def call():
            token = otel_context.attach(remote)
            try:
                fn()
            finally:
                otel_context.detach(token)

        return call

    def enter(manager_factory):
        def call():
            with manager_factory():
                pass

        return call

    def nothing():
        pass

    msg_id = "6b0f03938995f2ec3b4d03be"
    # (hook, its scaffold: the same call without the hook)
    hooks = {
        "HTTP middleware, request without traceparent": (lambda: middleware(plain), lambda: response),
        "HTTP middleware, request with traceparent": (lambda: middleware(traced), lambda: response),
        "outbox write, outside a trace": (enter(lambda: tracing.outbox_write("order:created", msg_id)), nothing),
        "outbox write, in a trace": (
            in_trace(enter(lambda: tracing.outbox_write("order:created", msg_id))),
            in_trace(nothing),
        ),
        "relay send, row without context": (enter(lambda: tracing.relay_send("order:created", msg_id, None)), nothing),
        "relay send, row with context": (enter(lambda: tracing.relay_send("order:created", msg_id, carrier)), nothing),
        "listener, message without traceparent": (
            enter(lambda: tracing.consume("expiration:complete", {"Nats-Msg-Id": msg_id})),
            nothing,
        ),
        "listener, message with traceparent": (enter(lambda: tracing.consume("expiration:complete", carrier)), nothing),
    }
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    sdk_tracer = provider.get_tracer("bench")

    def per_call(fn, number: int) -> float:
        # CPU time of this process (the batch processor's thread included), not wall time: the machine is shared.
        return min(timeit.repeat(fn, number=number, repeat=7, timer=time.process_time)) / number * 1e6

    results = [
        (
            "reference: one SDK span started and ended",
            float("nan"),
            per_call(lambda: sdk_tracer.start_span("x").end(), 500),
        )
    ]
    for name, (hook, scaffold) in hooks.items():
        tracing.use_tracer(None)
        off = per_call(hook, repeat) - per_call(scaffold, repeat)
        tracing.use_tracer(sdk_tracer)
        # Fewer calls than the batch processor's queue holds (2048): none dropped.
        on = per_call(hook, 500) - per_call(scaffold, 500)
        tracing.use_tracer(None)
        results.append((name, off, on))
    provider.shutdown()
    results.append(
        ("reference: one span encoded and sent over OTLP/HTTP (batches of 512)", float("nan"), export_cost())
    )
    return results


def export_cost(batch: int = 512, rounds: int = 5) -> float:
    """µs of the exporting thread's CPU per span: OTLP protobuf encoding and the HTTP POST, to a local receiver."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from devtools.otlp_sink import OtlpSink

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for _ in range(batch):  # shaped like a statement's span
        with tracer.start_as_current_span("SELECT tickets_replica_ticket") as span:
            span.set_attributes({"db.system.name": "sqlite", "db.query.text": "SELECT t.title FROM t WHERE t.id = %s"})
    spans = memory.get_finished_spans()
    with OtlpSink() as sink:
        exporter = OTLPSpanExporter(endpoint=f"{sink.endpoint}/v1/traces")
        costs = []
        for _ in range(rounds):
            started = time.thread_time()  # this thread only: the receiver's decoding is not ours
            exporter.export(spans)
            costs.append((time.thread_time() - started) / batch * 1e6)
        exporter.shutdown()
    provider.shutdown()
    return min(costs)


if __name__ == "__main__":
    print("| hook | tracing off | SDK recording |\n| --- | --- | --- |")
    for hook, off, on in micro():
        print(f"| {hook} | {off:.2f} µs | {on:.1f} µs |".replace("nan µs", "-"))
