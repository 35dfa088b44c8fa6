"""The event worker: every listener and the outbox relay in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connections
from django.utils import timezone
from django.utils.module_loading import import_string
from nats.js import JetStreamContext
from nats.js.errors import APIError

from core.backoff import backoff_seconds, sleep_unless_set
from messaging.consumer import consume_loop
from messaging.jetstream import connect, durable_name, ensure_streams, jetstream
from messaging.listener import DB_EXECUTOR, Listener, run_db
from messaging.models import FailedEvent, OutboxEvent
from messaging.observability import (
    HEALTH,
    MetricsServer,
    beat,
    worker_metrics,
)
from messaging.relay import relay_loop

logger = logging.getLogger(__name__)

# Measured (docs/profiles/worker-consume.md): bigger batches stopped paying off at about this size.
FETCH_BATCH = 256
FETCH_TIMEOUT_SECONDS = 1.0
OBSERVE_EVERY_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Periodic:
    """Work the worker does every `every()` seconds, e.g. the expiration safety net; `run` is ORM code."""

    name: str
    run: Callable[[], object]
    every: Callable[[], float]


def registered_periodic() -> list[Periodic]:
    """The periodic tasks settings.WORKER_PERIODIC_TASKS names; each interval is read from its setting
    at every round, so a changed setting (a test's) takes effect without a restart."""
    return [
        Periodic(name, import_string(path), every=functools.partial(getattr, settings, interval_setting))
        for name, path, interval_setting in settings.WORKER_PERIODIC_TASKS
    ]


async def periodic_loop(task: Periodic, stop: asyncio.Event) -> None:
    failures = 0
    while not stop.is_set():
        beat(task.name)
        try:
            await run_db(task.run)
            failures = 0
            await sleep_unless_set(stop, task.every())
        except Exception as exc:
            failures += 1
            logger.warning("%s: %s: %s (retrying)", task.name, type(exc).__name__, exc)
            await sleep_unless_set(stop, backoff_seconds(failures, cap=task.every()))


def _database_gauges() -> tuple[int, float, int]:
    """(outbox rows not yet published, age of the oldest in seconds, failed events not resolved)."""
    pending = OutboxEvent.objects.filter(sent_at__isnull=True)
    oldest = pending.order_by("created_at").values_list("created_at", flat=True).first()
    age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
    return pending.count(), max(age, 0.0), FailedEvent.objects.filter(resolved_at__isnull=True).count()


async def observe_loop(js: JetStreamContext, streams: dict, listeners: list[Listener], stop: asyncio.Event) -> None:
    """Refresh the gauges that are read rather than counted: consumer lag, outbox backlog, open failures."""
    metrics = worker_metrics()
    while not stop.is_set():
        beat("observe")
        try:
            try:
                for listener in listeners:
                    info = await js.consumer_info(streams[listener.subject], durable_name(listener.subject))
                    metrics.consumer_pending.labels(subject=listener.subject.value).set(info.num_pending or 0)
                    metrics.consumer_ack_pending.labels(subject=listener.subject.value).set(info.num_ack_pending or 0)
            except APIError:
                HEALTH.working("nats")  # the server answered (a consumer not made yet): the link works
                raise
            except Exception as exc:
                # A request every few seconds even when idle: a link that went silent shows in /healthz
                # before nats-py's pings declare it dead.
                HEALTH.failing("nats", exc)
                raise
            HEALTH.working("nats")
            backlog, oldest_age, failed_open = await run_db(_database_gauges)
            metrics.outbox_backlog.set(backlog)
            metrics.outbox_oldest_age.set(oldest_age)
            metrics.failed_events_open.set(failed_open)
        except Exception as exc:  # NATS or the database away: the gauges keep their last values
            logger.debug("observe: %s: %s", type(exc).__name__, exc)
        await sleep_unless_set(stop, OBSERVE_EVERY_SECONDS)


class Worker:
    """Runs until `stop` is set (SIGTERM/SIGINT in `run_listeners`), then drains and returns."""

    def __init__(
        self,
        listeners: list[Listener],
        *,
        stop: asyncio.Event | None = None,
        periodic: list[Periodic] | None = None,
        metrics_port: int | None = None,
    ) -> None:
        """`periodic`: tasks run every so often beside the loops (run_listeners: WORKER_PERIODIC_TASKS).
        `metrics_port`: serve /metrics and /healthz there (0: any free port; None: not at all)."""
        self.listeners = listeners
        self.stop = stop or asyncio.Event()
        self.periodic = periodic or []
        self.metrics_port = metrics_port
        self.metrics_server: MetricsServer | None = None
        self._database_threads: list[ThreadPoolExecutor] = []

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

    def _loop(self, name: str, loop: Coroutine) -> asyncio.Task:
        """`loop` as a task with a database thread (and so a connection) of its own: one ORM call stuck on
        a dead link, until the connection's timeouts end it, freezes that loop alone."""
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"db-{name}")
        self._database_threads.append(executor)

        async def run() -> object:
            DB_EXECUTOR.set(executor)  # this task's context only
            return await loop

        return asyncio.create_task(run(), name=name)

    async def _close_database_threads(self) -> None:
        """Close each thread's connection on that thread, then let the threads go."""
        running = asyncio.get_running_loop()
        for executor in self._database_threads:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running.run_in_executor(executor, connections.close_all), timeout=10)
            executor.shutdown(wait=False)
        self._database_threads.clear()

    async def _setup_streams(self, js: JetStreamContext) -> dict | None:
        failures = 0
        while not self.stop.is_set():
            try:
                return await ensure_streams(js)
            except Exception as exc:
                failures += 1
                logger.warning("stream setup: %s: %s (retrying)", type(exc).__name__, exc)
                await sleep_unless_set(self.stop, backoff_seconds(failures))
        return None

    async def run(self) -> None:
        loops = [f"consume {listener.subject.value}" for listener in self.listeners]
        loops += ["relay", "observe", *(task.name for task in self.periodic)]
        HEALTH.expect(loops)
        HEALTH.stall_seconds = settings.WORKER_STALL_SECONDS
        HEALTH.nats_down_seconds = settings.WORKER_NATS_DOWN_SECONDS
        HEALTH.database_down_seconds = settings.WORKER_DATABASE_DOWN_SECONDS
        if self.metrics_port is not None:
            self.metrics_server = MetricsServer(
                host=settings.WORKER_METRICS_HOST, port=self.metrics_port, health=HEALTH
            ).start()
        try:
            await self._run()
        finally:
            if self.metrics_server is not None:
                self.metrics_server.stop()

    async def _run(self) -> None:
        logger.info("connecting to NATS at %s", settings.NATS_URL)
        client = await self._until_stop(connect(name=f"{settings.NATS_QUEUE_GROUP}-worker"))
        if client is None:
            return
        HEALTH.watch(client)
        try:
            js = jetstream(client)
            streams = await self._until_stop(self._setup_streams(js))
            if streams is None:
                return
            logger.info(
                "listening on %s", ", ".join(f"{s.value}@{streams[s]}" for s in (x.subject for x in self.listeners))
            )
            tasks = [
                self._loop(
                    f"consume-{listener.subject.value}",
                    consume_loop(
                        js,
                        streams[listener.subject],
                        listener,
                        self.stop,
                        batch=FETCH_BATCH,
                        timeout=FETCH_TIMEOUT_SECONDS,
                    ),
                )
                for listener in self.listeners
            ]
            tasks.append(self._loop("relay", relay_loop(js, self.stop)))
            tasks.append(self._loop("observe", observe_loop(js, streams, self.listeners, self.stop)))
            tasks += [self._loop(task.name, periodic_loop(task, self.stop)) for task in self.periodic]
            await asyncio.gather(*tasks)
        finally:
            await self._close_database_threads()
            # The loops have finished their work; flush so the last acks reach the server, then close.
            # (Client.drain() would wait on pull subscriptions' queues, which fetch never marks done.)
            with contextlib.suppress(Exception):
                await client.flush(timeout=2)
            if not client.is_closed:
                # A link that broke while closing (a reset, a node gone dark) must not turn a clean stop
                # into a traceback and a non-zero exit: the acks that could go went with the flush.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), timeout=5)
            logger.info("worker stopped")
