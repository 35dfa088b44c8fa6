"""`python -m bench.event_decode`: events/s of decode + validate, this checkout's schemas against a git revision's."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_revision(revision: str) -> types.ModuleType:
    """`messaging/events.py` as it was at `revision`, imported under another name beside today's."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{revision}:messaging/events.py"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    spec = importlib.util.spec_from_loader("baseline_events", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module.__name__] = module  # dataclasses look their module up while building the classes
    exec(compile(source, f"{revision}:messaging/events.py", "exec"), module.__dict__)  # noqa: S102 (our own history)
    return module


def messages(count: int) -> list[tuple[str, bytes]]:
    """The worker's mix: mostly ticket events (the replica's catch-up), some of every other subject."""
    out = []
    for n in range(count):
        hex_id = f"{n:024x}"
        ticket = {"id": hex_id, "version": n % 9, "title": f"concert {n}", "price": 20 + n % 7 / 2, "userId": "u1"}
        kind = n % 10
        if kind < 5:
            out.append(("ticket:created", ticket))
        elif kind < 8:
            out.append(("ticket:updated", {**ticket, "orderId": f"{n + 1:024x}"} if n % 2 else ticket))
        elif kind == 8:
            out.append(("payment:created", {"id": hex_id, "orderId": f"{n + 1:024x}", "stripeId": "ch_1"}))
        else:
            out.append(("expiration:complete", {"orderId": hex_id}))
    return [(subject, json.dumps(payload).encode()) for subject, payload in out]


def run_once(parse, batch: list[tuple[str, bytes]]) -> tuple[float, float]:
    """(events per second, CPU microseconds per event) of one pass over `batch`."""
    cpu, wall = time.process_time(), time.perf_counter()
    for subject, data in batch:
        parse(subject, data)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(batch) / wall, cpu / len(batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.event_decode", description=__doc__)
    parser.add_argument("--baseline", default="29d148c", help="git revision whose messaging/events.py is the baseline")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ticketing_orders.settings")
    os.environ.setdefault("JWT_KEY", "bench-only-key")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from messaging import events

    baseline = load_revision(args.baseline)
    batch = messages(args.events)
    for subject, data in batch[:50]:  # both accept the same payloads and read them alike
        old, new = baseline.parse_event(subject, data), events.parse_event(subject, data)
        assert old.to_payload() == new.to_payload(), (subject, data)
    figures: dict[str, list[tuple[float, float]]] = {"baseline": [], "pydantic": []}
    for _ in range(args.rounds):  # interleaved, so a busy moment of the machine hits both
        figures["baseline"].append(run_once(baseline.parse_event, batch))
        figures["pydantic"].append(run_once(events.parse_event, batch))
    rate = {name: statistics.median(r for r, _ in runs) for name, runs in figures.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in figures.items()}
    print(f"{args.events} events x {args.rounds} rounds, medians (baseline: {args.baseline}:messaging/events.py)")
    print("| code | events/s | CPU per event |")
    print("| --- | --- | --- |")
    for name in figures:
        print(f"| {name} | {rate[name]:,.0f} | {cpu[name]:.1f} µs |")
    print(f"pydantic / baseline: {rate['pydantic'] / rate['baseline']:.2f}x events/s")


if __name__ == "__main__":
    main()
