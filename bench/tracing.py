"""The tracing A/B: the API's CPU per request and req/s with tracing off and on, beside another checkout's code."""

from __future__ import annotations

import statistics
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import REPO, Child, Database, Figure, Run, log, num, object_id, session_cookie, wrk

# A sampled traceparent, as an instrumented ingress would send with every request.
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def baseline_checkout(spec: str, workdir: Path) -> Path:
    """`spec` as a directory holding a checkout, or a git revision of this repository exported into `workdir`."""
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    target = workdir / f"baseline-{spec.replace('/', '_')}"
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

    seconds = 2 if run.quick else 6
    rounds = 2 if run.quick else 4
    tickets = 4000 if run.quick else 20_000
    baseline = Run(code=baseline_checkout(run.baseline, run.workdir), workdir=run.workdir, quick=run.quick)
    sink = OtlpSink().start()
    user = object_id("6a", 1)
    cookie = session_cookie(user)
    variants = [
        Variant("baseline", f"baseline code ({run.baseline})", baseline),
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
            variant.server, variant.base = variant.code_run.gunicorn(env)
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


def cpu_ms(result: dict) -> float:
    return result["cpu_s"] / result["requests"] * 1000 if result["requests"] else float("nan")


def ab_figures(db: Database, variants: list[Variant], seconds: float, exported: int) -> list[Figure]:
    """Per endpoint and variant: the medians of the rounds, and each round's ratio to the baseline's round."""
    figures = []
    base = variants[0]
    traced = sum(r["requests"] for rounds in variants[-1].rounds.values() for r in rounds) or 1
    for endpoint in base.rounds:
        base_rounds = base.rounds[endpoint]
        base_cpu = statistics.median(cpu_ms(r) for r in base_rounds)
        base_rate = statistics.median(r["rate"] for r in base_rounds)
        for variant in variants[1:]:
            mine = variant.rounds[endpoint]
            cpu_ratio = statistics.median(cpu_ms(m) / cpu_ms(b) for m, b in zip(mine, base_rounds, strict=True))
            rate_ratio = statistics.median(m["rate"] / b["rate"] for m, b in zip(mine, base_rounds, strict=True))
            cpu, rate = statistics.median(cpu_ms(m) for m in mine), statistics.median(m["rate"] for m in mine)
            unexpected = sum(m["requests"] - m["c2xx"] for m in [*mine, *base_rounds])
            requests = sum(m["requests"] for m in mine)
            per_round = ", ".join(f"{cpu_ms(m) / cpu_ms(b):.2f}" for m, b in zip(mine, base_rounds, strict=True))
            off = variant.name != "on"
            figures.append(
                Figure(
                    scenario=f"Tracing A/B, {endpoint}: {variant.label}",
                    database=db.label,
                    measured=(
                        f"{rate:.0f} req/s, {num(cpu)} ms CPU/req (median of {len(mine)} rounds of {seconds:.0f} s; "
                        f"CPU ratio per round {per_round})"
                        + ("" if off else f"; {exported} spans exported in all, {exported / traced:.1f} per request")
                        + (f", **{unexpected} unexpected answers**" if unexpected else "")
                    ),
                    baseline=f"{base.label}: {base_rate:.0f} req/s, {num(base_cpu)} ms CPU/req",
                    ratio=rate_ratio,
                    ratio_label=f"{rate_ratio:.0%} req/s, {cpu_ratio:.2f}x CPU/req",
                    target="<= 1.05x CPU/req (within noise)" if off else "measured",
                    met=(cpu_ratio <= 1.05 and not unexpected) if off else None,
                    numbers={
                        "rate": rate,
                        "cpu_ms": cpu,
                        "cpu_ratio": cpu_ratio,
                        "rate_ratio": rate_ratio,
                        "baseline_rate": base_rate,
                        "baseline_cpu_ms": base_cpu,
                        "requests": requests,
                        "spans_exported": None if off else exported,
                        "rounds": [{"cpu_ms": cpu_ms(m), "rate": m["rate"]} for m in mine],
                        "baseline_rounds": [{"cpu_ms": cpu_ms(b), "rate": b["rate"]} for b in base_rounds],
                    },
                )
            )
    return figures


AB_SCENARIOS = {"tracing": tracing_ab}
