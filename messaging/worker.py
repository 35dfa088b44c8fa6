"""The event worker: every listener and the outbox relay in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import time

from django.conf import settings
from nats.js import JetStreamContext

from messaging.consumer import consume_loop
from messaging.events import encode_json
from messaging.jetstream import connect, ensure_streams
from messaging.listener import Listener, run_db
from messaging.outbox import outbox_mark_sent, outbox_pending, outbox_prune

logger = logging.getLogger(__name__)

# Measured (docs/profiles/worker-consume.md): bigger batches stopped paying off at about this size.
FETCH_BATCH = 256
FETCH_TIMEOUT_SECONDS = 1.0
RELAY_BATCH = 200
OUTBOX_RETENTION = dt.timedelta(days=1)
PRUNE_EVERY_SECONDS = 600


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when a stop is requested."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def relay_once(js: JetStreamContext) -> int:
    """Publish pending outbox rows in order, each with Nats-Msg-Id = its id, then mark them sent.

    A crash between publishing and marking re-sends on the next start; JetStream drops the re-send.
    """
    pending = await run_db(outbox_pending, limit=RELAY_BATCH)
    sent: list[str] = []
    try:
        for row in pending:
            await js.publish(row.subject, encode_json(row.payload), headers={"Nats-Msg-Id": row.id}, timeout=5)
            sent.append(row.id)
    finally:
        if sent:
            await run_db(outbox_mark_sent, ids=sent)
    return len(sent)


async def relay_loop(js: JetStreamContext, stop: asyncio.Event) -> None:
    failures = 0
    last_prune = 0.0
    while not stop.is_set():
        try:
            if await relay_once(js) == RELAY_BATCH:
                continue  # more waiting: no pause
            failures = 0
            if time.monotonic() - last_prune > PRUNE_EVERY_SECONDS:
                await run_db(outbox_prune, older_than=OUTBOX_RETENTION)
                last_prune = time.monotonic()
        except Exception as exc:
            failures += 1
            logger.warning("outbox relay: %s: %s (retrying)", type(exc).__name__, exc)
            await _pause(stop, min(0.2 * 2**failures, 5))
            continue
        await _pause(stop, settings.OUTBOX_POLL_SECONDS)


class Worker:
    """Runs until `stop` is set (SIGTERM/SIGINT in `run_listeners`), then drains and returns."""

    def __init__(self, listeners: list[Listener], *, stop: asyncio.Event | None = None) -> None:
        self.listeners = listeners
        self.stop = stop or asyncio.Event()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)

    def request_stop(self, sig: signal.Signals | None = None) -> None:
        if not self.stop.is_set():
            logger.info("stop requested%s: draining", f" ({sig.name})" if sig else "")
        self.stop.set()

    async def _until_stop(self, awaitable):
        """Await `awaitable` unless a stop comes first (then None)."""
        task = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None

    async def _setup_streams(self, js: JetStreamContext) -> dict | None:
        failures = 0
        while not self.stop.is_set():
            try:
                return await ensure_streams(js)
            except Exception as exc:
                failures += 1
                logger.warning("stream setup: %s: %s (retrying)", type(exc).__name__, exc)
                await _pause(self.stop, min(0.2 * 2**failures, 5))
        return None

    async def run(self) -> None:
        logger.info("connecting to NATS at %s", settings.NATS_URL)
        client = await self._until_stop(connect(name=f"{settings.NATS_QUEUE_GROUP}-worker"))
        if client is None:
            return
        try:
            js = client.jetstream()
            streams = await self._until_stop(self._setup_streams(js))
            if streams is None:
                return
            logger.info(
                "listening on %s", ", ".join(f"{s.value}@{streams[s]}" for s in (x.subject for x in self.listeners))
            )
            tasks = [
                asyncio.create_task(
                    consume_loop(
                        js,
                        streams[listener.subject],
                        listener,
                        self.stop,
                        batch=FETCH_BATCH,
                        timeout=FETCH_TIMEOUT_SECONDS,
                    )
                )
                for listener in self.listeners
            ]
            tasks.append(asyncio.create_task(relay_loop(js, self.stop)))
            await asyncio.gather(*tasks)
        finally:
            # The loops have finished their work; flush so the last acks reach the server, then close.
            # (Client.drain() would wait on pull subscriptions' queues, which fetch never marks done.)
            with contextlib.suppress(Exception):
                await client.flush(timeout=2)
            if not client.is_closed:
                await client.close()
            logger.info("worker stopped")
