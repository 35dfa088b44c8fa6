#!/usr/bin/env python
"""`manage.py run_listeners` with each outbox relay pass timed, for `outbox_latency.py --trace-relay`.

The worker is the service's own (`messaging.worker.Worker`, same listeners, same signals); the only
difference is that `relay_once` is wrapped to append one line per pass to the file named by RELAY_TRACE:
`start end published pending_query mark_sent` (start and end in epoch seconds; the last two are the
seconds spent in `outbox_pending` and `outbox_mark_sent`, database connection set-up included).
Diagnostic only: the wrapping adds a write per pass. BENCH_RELAY_BATCH, when set, replaces
`messaging.worker.RELAY_BATCH` in this process (to try a value before changing the constant).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)
    import django

    django.setup()
    from django.core.management import call_command

    from messaging import worker

    relay_once = worker.relay_once
    trace = open(os.environ["RELAY_TRACE"], "a", buffering=1)  # noqa: SIM115 (lives as long as the process)
    # Seconds spent inside the two database calls of the pass in progress (they run one at a time).
    spent = {"outbox_pending": 0.0, "outbox_mark_sent": 0.0}

    def timed(fn):
        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[fn.__name__] += time.perf_counter() - started

        return call

    async def traced_relay_once(js):
        spent.update(dict.fromkeys(spent, 0.0))
        started = time.time()
        published = 0
        try:
            published = await relay_once(js)
            return published
        finally:
            trace.write(
                f"{started:.6f} {time.time():.6f} {published} "
                f"{spent['outbox_pending']:.6f} {spent['outbox_mark_sent']:.6f}\n"
            )

    if os.environ.get("BENCH_RELAY_BATCH"):
        # outbox_latency.py --relay-batch: try another batch size without editing the service.
        worker.RELAY_BATCH = int(os.environ["BENCH_RELAY_BATCH"])
    worker.relay_once = traced_relay_once
    worker.outbox_pending = timed(worker.outbox_pending)
    worker.outbox_mark_sent = timed(worker.outbox_mark_sent)
    try:
        call_command("run_listeners")
    finally:
        trace.close()


if __name__ == "__main__":
    main()
