"""The outbox relay: committed outbox rows to JetStream in a bounded publish window, woken by commits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nats.js.errors
from django.conf import settings
from django.db import close_old_connections, connection, connections
from django.utils import timezone
from nats.js import JetStreamContext

from core import tracing
from core.backoff import backoff_seconds, sleep_unless_set
from messaging.events import encode_json
from messaging.listener import run_db
from messaging.models import OutboxEvent
from messaging.observability import HEALTH, beat, record_published
from messaging.outbox import outbox_mark_sent, outbox_pending, outbox_prune

logger = logging.getLogger(__name__)

RELAY_BATCH = 500  # rows read per pass
PUBLISH_WINDOW = 128  # publishes awaiting their PubAck at once
# Rows acked but not yet marked sent (SQLite's write lock is busy): past this many, stop reading more.
MAX_UNMARKED = 10_000
OUTBOX_RETENTION = dt.timedelta(days=1)
PRUNE_EVERY_SECONDS = 600
# The channel the outbox's AFTER INSERT trigger notifies (migration 0002, PostgreSQL only).
NOTIFY_CHANNEL = "messaging_outbox"
LISTENER_APPLICATION_NAME = "orders-outbox-listener"


@dataclasses.dataclass
class PublishResult:
    """What one `publish_batch` did: the one place to observe the relay (counts, ack latencies, time)."""

    acked: list[str] = dataclasses.field(default_factory=list)  # ids whose PubAck came back (duplicates too)
    latencies: list[float] = dataclasses.field(default_factory=list)  # send to PubAck, seconds, as `acked`
    failed: list[tuple[str, BaseException]] = dataclasses.field(default_factory=list)
    not_sent: int = 0  # left for the next pass: behind a failure (window closed, or same aggregate)
    duration: float = 0.0

    @property
    def published(self) -> int:
        return len(self.acked)

    @property
    def error(self) -> BaseException | None:
        return self.failed[0][1] if self.failed else None


def aggregate_key(row: OutboxEvent) -> str:
    """What an event is about: its payload's `id` (the order, for order:created and order:cancelled)."""
    key = row.payload.get("id") if isinstance(row.payload, dict) else None
    return key if isinstance(key, str) else row.id


async def publish_batch(
    js: JetStreamContext,
    rows: Sequence[OutboxEvent],
    *,
    window: int | None = None,
    ack_timeout: float | None = None,
) -> PublishResult:
    """Publish `rows` (oldest first) with at most `window` PubAcks outstanding; Nats-Msg-Id = the row's id.

    Order: the rows of one aggregate go one at a time, each after the previous one's PubAck, so an
    order:cancelled never lands before its order:created, even when a reconnect loses one publish and
    delivers the next. Different aggregates overlap; that is where the window's speed comes from.
    Errors: a failed publish holds back the rest of its aggregate; a failure other than the server
    refusing that one message (a timeout, no connection, no stream) also closes the window: no new
    publishes start, the ones in flight finish. Everything not acked stays pending for the next pass.
    """
    window = window or PUBLISH_WINDOW
    # Per publish: past it the row stays pending for the next pass.
    ack_timeout = ack_timeout or settings.NATS_PUBLISH_TIMEOUT_SECONDS
    result = PublishResult()
    chains: dict[str, list[OutboxEvent]] = {}
    for row in rows:
        chains.setdefault(aggregate_key(row), []).append(row)
    queue = deque(chains.values())
    closed = False
    started = time.perf_counter()

    async def sender() -> None:
        nonlocal closed
        while queue and not closed:
            chain = queue.popleft()
            for index, row in enumerate(chain):
                sent = time.perf_counter()
                try:
                    # The row's trace context goes beside Nats-Msg-Id (traceparent, tracestate if any).
                    with tracing.relay_send(row.subject, row.id, row.trace_context) as trace_headers:
                        await js.publish(
                            row.subject,
                            encode_json(row.payload),
                            headers={"Nats-Msg-Id": row.id, **trace_headers},
                            timeout=ack_timeout,
                        )
                except Exception as exc:
                    result.failed.append((row.id, exc))
                    result.not_sent += len(chain) - index - 1
                    # The server refused this message only: other aggregates may go on.
                    closed = closed or not isinstance(exc, nats.js.errors.APIError)
                    break
                result.acked.append(row.id)
                result.latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(sender() for _ in range(min(window, len(queue)))))
    result.not_sent += sum(len(chain) for chain in queue)
    result.duration = time.perf_counter() - started
    return result


async def relay_once(js: JetStreamContext, *, limit: int | None = None) -> int:
    """One pass: publish the pending rows, mark the acked ones sent, then raise the first failure if any.

    A crash between publishing and marking re-sends on the next start; JetStream drops the re-send.
    """
    rows = await run_db(outbox_pending, limit=limit or RELAY_BATCH)
    result = await publish_batch(js, rows)
    if result.acked:
        await run_db(outbox_mark_sent, ids=result.acked)
    if result.error is not None:
        raise result.error
    return result.published


async def relay_loop(js: JetStreamContext, stop: asyncio.Event) -> None:
    """The worker's relay: until `stop` is set, then mark what was published and return."""
    await Relay(js, stop).run()


class Relay:
    """Reads pending rows, publishes them with `publish_batch`, and hands the acked ids to a marker.

    The marker runs the `UPDATE ... sent_at` on a thread and connection of its own, so a mark that waits
    for SQLite's write lock (held by a flood of writers) delays neither the next publishes nor the
    listeners' database work. Meanwhile the acked ids are skipped when reading; if the process dies
    before their mark, they are re-sent and JetStream drops the copies by Nats-Msg-Id.
    """

    def __init__(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        self.js = js
        self.stop = stop
        self.wake = asyncio.Event()  # a commit (or the stop): read the table now
        self.unmarked: set[str] = set()  # acked, their mark not yet committed
        self._mark_wanted = asyncio.Event()
        self._marked = asyncio.Event()
        self._mark_thread = ThreadPoolExecutor(1, thread_name_prefix="outbox-mark")

    async def run(self) -> None:
        helpers = [asyncio.create_task(self._wake_on_stop()), asyncio.create_task(self._mark_forever())]
        waker = commit_waker(self.wake)
        if waker is not None:
            helpers.append(asyncio.create_task(waker))
        try:
            await self._relay_forever()
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            try:
                if self.unmarked:
                    await self._in_mark_thread(outbox_mark_sent, ids=list(self.unmarked))
            except Exception as exc:
                logger.warning(
                    "outbox mark: %s: %s (%d rows will be re-sent)", type(exc).__name__, exc, len(self.unmarked)
                )
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.get_running_loop().run_in_executor(self._mark_thread, connections.close_all)
                self._mark_thread.shutdown(wait=False)

    async def pass_once(self) -> tuple[int, PublishResult]:
        """Read up to RELAY_BATCH pending rows not already acked, publish them; (rows read, result)."""
        rows = await run_db(outbox_pending, limit=RELAY_BATCH, exclude=frozenset(self.unmarked))
        result = await publish_batch(self.js, rows)
        if result.error is not None and not isinstance(result.error, nats.js.errors.APIError):
            HEALTH.failing("nats", result.error)  # a timeout or no connection, not a refused message
        elif result.acked:
            HEALTH.working("nats")
        if result.acked:
            self.unmarked.update(result.acked)
            self._mark_wanted.set()
            acked_at = timezone.now()
            by_id = {row.id: row for row in rows}
            for row_id in result.acked:
                row = by_id[row_id]
                record_published(row.subject, (acked_at - row.created_at).total_seconds())
        return len(rows), result

    async def _relay_forever(self) -> None:
        failures = 0
        while not self.stop.is_set():
            beat("relay")
            self.wake.clear()  # a commit from here on wakes the wait below
            try:
                if len(self.unmarked) >= MAX_UNMARKED:
                    self._marked.clear()
                    await sleep_unless_set(self._marked, 1.0)  # back-pressure: the marks are far behind
                    continue
                read, result = await self.pass_once()
                if result.error is not None:
                    raise result.error
                failures = 0
                if read == RELAY_BATCH:
                    continue  # more waiting: no pause
            except Exception as exc:
                failures += 1
                logger.warning("outbox relay: %s: %s (retrying)", type(exc).__name__, exc)
                await sleep_unless_set(self.stop, backoff_seconds(failures))
                continue
            await sleep_unless_set(self.wake, settings.OUTBOX_POLL_SECONDS)

    async def _wake_on_stop(self) -> None:
        await self.stop.wait()
        self.wake.set()

    async def _mark_forever(self) -> None:
        failures = 0
        last_prune = 0.0
        while True:
            await sleep_unless_set(self._mark_wanted, PRUNE_EVERY_SECONDS)
            self._mark_wanted.clear()
            ids = list(self.unmarked)
            try:
                if ids:
                    await self._in_mark_thread(outbox_mark_sent, ids=ids)
                    self.unmarked.difference_update(ids)
                    self._marked.set()
                if time.monotonic() - last_prune > PRUNE_EVERY_SECONDS:
                    await self._in_mark_thread(outbox_prune, older_than=OUTBOX_RETENTION)
                    last_prune = time.monotonic()
                failures = 0
            except Exception as exc:
                failures += 1
                logger.warning("outbox mark: %s: %s (retrying)", type(exc).__name__, exc)
                self._mark_wanted.set()
                await asyncio.sleep(backoff_seconds(failures))

    async def _in_mark_thread(self, fn: Callable, /, **kwargs: Any) -> Any:
        def call() -> Any:
            close_old_connections()
            try:
                return fn(**kwargs)
            finally:
                close_old_connections()

        return await asyncio.get_running_loop().run_in_executor(self._mark_thread, call)


def commit_waker(wake: asyncio.Event) -> Any:
    """A coroutine that sets `wake` when another connection commits, for this database; None: poll only."""
    if connection.vendor == "postgresql":
        return postgres_listen(wake)
    name = str(connection.settings_dict.get("NAME") or "")
    if connection.vendor == "sqlite" and name not in ("", ":memory:") and not name.startswith("file:"):
        return sqlite_watch(wake, path=name, every=settings.OUTBOX_SQLITE_WAKE_SECONDS)
    return None  # MongoDB: the poll interval alone


async def postgres_listen(wake: asyncio.Event) -> None:
    """LISTEN on a dedicated autocommit connection and set `wake` at each notification; reconnect forever.

    The outbox trigger's pg_notify is delivered when the inserting transaction commits.
    """
    import psycopg
    from psycopg import sql

    params = connection.get_connection_params()
    for django_only in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(django_only, None)
    params["application_name"] = LISTENER_APPLICATION_NAME
    # The connection's keepalives and tcp_user_timeout (settings) come with the params: a peer that
    # vanished without closing is noticed within seconds, not after the kernel's hours.
    failures = 0
    while True:
        try:
            listener = await psycopg.AsyncConnection.connect(autocommit=True, **params)
            async with listener:
                await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
                if failures:
                    logger.info("outbox listen: listening again")
                failures = 0
                wake.set()  # what was committed while nobody listened is in the table
                async for _ in listener.notifies():
                    wake.set()
        except (psycopg.Error, OSError) as exc:
            failures += 1
            logger.warning("outbox listen: %s: %s (reconnecting)", type(exc).__name__, exc)
            wake.set()  # poll meanwhile
            await asyncio.sleep(backoff_seconds(failures))


async def sqlite_watch(wake: asyncio.Event, *, path: str, every: float) -> None:
    """Set `wake` whenever another connection has committed to the SQLite file.

    `PRAGMA data_version` changes on each commit by another connection; in WAL mode it reads the shared
    WAL index without waiting for any lock, so it is cheap enough to run every few milliseconds here.
    """
    db = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        last = None
        while True:
            try:
                version = db.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                version = None  # busy for an instant: wake, the table decides
            if version != last or version is None:
                last = version
                wake.set()
            await asyncio.sleep(every)
    finally:
        db.close()
