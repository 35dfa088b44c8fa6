"""The event worker: every listener and the outbox relay in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from django.conf import settings
from nats.js import JetStreamContext

from messaging.consumer import consume_loop
from messaging.jetstream import connect, ensure_streams
from messaging.listener import Listener
from messaging.relay import RELAY_BATCH, relay_loop, relay_once  # noqa: F401 (imported from here by tools and tests)

logger = logging.getLogger(__name__)

# Measured (docs/profiles/worker-consume.md): bigger batches stopped paying off at about this size.
FETCH_BATCH = 256
FETCH_TIMEOUT_SECONDS = 1.0


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when a stop is requested."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


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
