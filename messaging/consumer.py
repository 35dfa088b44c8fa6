"""The worker's consume loop: fetch a batch, set bad messages aside, apply the good ones together."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from nats.js import JetStreamContext

from core import tracing
from core.backoff import backoff_seconds, sleep_unless_set
from core.transactions import atomic
from messaging.events import Event, InvalidEvent
from messaging.jetstream import ensure_consumer
from messaging.listener import (
    Delivery,
    Listener,
    Outcome,
    apply_message,
    decode_message,
    describe,
    describe_event,
    process_message,
    report_outcome,
    resolve_failure,
    retry_later,
    run_db,
    set_aside,
)
from messaging.observability import beat

logger = logging.getLogger(__name__)


async def hand_back(messages: list) -> None:
    """Nak without a delay: the messages go at once to another worker (or to this one's successor)."""
    for msg in messages:
        with contextlib.suppress(Exception):
            await msg.nak()


async def process_batch(listener: Listener, messages: list, *, stop: asyncio.Event | None = None) -> list:
    """Settle a fetched batch; returns each message's Outcome, or None for one handed back on a stop.

    Each message is decoded and validated alone: a bad one is set aside (FailedEvent) and terminated
    at once. The good ones are applied together, in one transaction, and acked only once it has
    committed. If that transaction fails, they are applied one at a time, so one poison message
    never fails or delays the others; an unreachable database naks them all with a delay instead.
    A listener without `handle_batch` is applied one message at a time.
    """
    outcomes: list[Outcome | None] = [None] * len(messages)
    if listener.handle_batch is None:
        for index, msg in enumerate(messages):
            if stop is not None and stop.is_set():
                await hand_back(messages[index:])
                break
            outcomes[index] = await process_message(listener, msg)
        return outcomes

    good: list[tuple[int, object, Event, Delivery]] = []
    for index, msg in enumerate(messages):
        delivery = Delivery.of(listener, msg)
        try:
            good.append((index, msg, decode_message(listener, msg), delivery))
        except InvalidEvent as exc:
            outcomes[index] = await set_aside(delivery, msg, str(exc), about=describe(delivery.subject, msg.data))
    if not good:
        return outcomes
    if stop is not None and stop.is_set():
        await hand_back([msg for _, msg, _, _ in good])
        return outcomes

    events = [event for _, _, event, _ in good]
    waited_long = [d for _, _, _, d in good if d.delivered > settings.EVENT_MAX_DELIVERIES]

    def apply_together() -> list[str]:
        with tracing.consume_batch(listener.subject.value, [msg.headers for _, msg, _, _ in good]), atomic():
            results = listener.handle_batch(events)
        for delivery in waited_long:  # shown to an operator while it could not apply: cleared now
            resolve_failure(stream=delivery.stream, sequence=delivery.sequence)
        return results

    try:
        results = await run_db(apply_together)
    except (OperationalError, InterfaceError) as exc:
        # The database is unreachable: not the events' fault, so this never makes them poison.
        for index, msg, event, delivery in good:
            reason = f"database unavailable: {exc}"
            outcomes[index] = await retry_later(delivery, msg, reason, about=describe_event(event))
        return outcomes
    except Exception as exc:
        logger.warning(
            "%s: a batch of %d failed (%s: %s): applying them one at a time",
            listener.subject,
            len(good),
            type(exc).__name__,
            exc,
        )
        for position, (index, msg, event, delivery) in enumerate(good):
            if stop is not None and stop.is_set():
                await hand_back([m for _, m, _, _ in good[position:]])
                break
            outcomes[index] = await apply_message(listener, msg, event, delivery)
        return outcomes

    for (index, msg, event, delivery), result in zip(good, results, strict=True):
        await msg.ack()
        outcome = Outcome(result)
        report_outcome(delivery, outcome, about=describe_event(event))
        outcomes[index] = outcome
    return outcomes


async def consume_loop(
    js: JetStreamContext,
    stream: str,
    listener: Listener,
    stop: asyncio.Event,
    *,
    batch: int,
    timeout: float,
) -> None:
    """Fetch up to `batch` messages at a time for one listener and settle them, until a stop.

    On a stop the batch being applied is finished and acked; what is not applied yet is handed back.
    """
    subscription = None
    failures = 0
    while not stop.is_set():
        beat(f"consume {listener.subject.value}")
        try:
            if subscription is None:
                durable = await ensure_consumer(js, stream=stream, subject=listener.subject)
                subscription = await js.pull_subscribe_bind(durable=durable, stream=stream)
            try:
                messages = await subscription.fetch(batch=batch, timeout=timeout)
            except TimeoutError:  # nats.errors.TimeoutError too: nothing to fetch
                continue
            failures = 0
            await process_batch(listener, messages, stop=stop)
        except Exception as exc:
            failures += 1
            logger.warning("%s consumer: %s: %s (retrying)", listener.subject, type(exc).__name__, exc)
            if failures >= 3 and subscription is not None:
                # The consumer may be gone (a server that lost its state): set it up again.
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
                subscription = None
            await sleep_unless_set(stop, backoff_seconds(failures))
    if subscription is not None:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
