"""How one consumed message is applied, retried, or set aside: the unit of work of the worker."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from messaging.events import EVENT_TYPES, Event, InvalidEvent, Subject, decode_json
from messaging.models import FailedEvent

logger = logging.getLogger(__name__)


class NotYet(Exception):
    """The event depends on one that has not arrived (a version gap): redeliver, however long it takes."""


class RetryLater(Exception):
    """The event cannot be applied now (e.g. unknown order); after EVENT_MAX_DELIVERIES it is poison."""


class Rejected(Exception):
    """The event can never be applied as it stands; record it for an operator at once."""


@dataclasses.dataclass(frozen=True)
class Listener:
    """A subject and the function that applies its event in one transaction.

    `handle` returns a short word for the log ("applied", "ignored") or raises one of the above.
    """

    subject: Subject
    handle: Callable[[Any], str]

    @property
    def event_type(self) -> type[Event]:
        return EVENT_TYPES[self.subject]


def registered_listeners() -> dict[Subject, Listener]:
    """Every app's listeners, from settings.EVENT_LISTENERS."""
    listeners = [listener for path in settings.EVENT_LISTENERS for listener in import_string(path)]
    return {listener.subject: listener for listener in listeners}


async def run_db(fn: Callable, /, *args, **kwargs):
    """Run ORM work from asyncio on Django's thread, dropping connections that went stale meanwhile."""

    def call():
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(call, thread_sensitive=True)()


def retry_delay(delivered: int) -> float:
    return min(settings.EVENT_RETRY_BASE_SECONDS * 2 ** max(delivered - 1, 0), settings.EVENT_RETRY_MAX_SECONDS)


def record_failure(
    *, subject: str, stream: str, sequence: int | None, data: bytes, error: str, delivered: int
) -> FailedEvent:
    """Keep the message where the admin shows it; a redelivery of the same message updates its row."""
    failed, _ = FailedEvent.objects.update_or_create(
        stream=stream,
        stream_sequence=sequence,
        defaults={
            "subject": subject,
            "payload": data.decode("utf-8", errors="replace"),
            "error": error,
            "delivery_count": delivered,
            "resolved_at": None,
        },
    )
    return failed


def resolve_failure(*, stream: str, sequence: int) -> None:
    FailedEvent.objects.filter(stream=stream, stream_sequence=sequence, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    )


def describe(subject: str, data: bytes) -> str:
    """`id=… version=…` of a payload for the log, as far as it can be read."""
    try:
        payload = decode_json(data)
    except InvalidEvent:
        return f"bytes={len(data)}"
    if not isinstance(payload, dict):
        return "payload=not-an-object"
    keys = ("id", "orderId", "version")
    return " ".join(f"{k}={payload[k]}" for k in keys if k in payload) or "payload=?"


async def process_message(listener: Listener, msg) -> str:
    """Apply one JetStream message and settle it: ack, nak with a delay, or record and terminate.

    The ack comes only after the handler's transaction has committed; handlers are idempotent, so a
    lost ack (a crash, NATS gone) leads to a redelivery that changes nothing. Returns what happened.
    """
    meta = msg.metadata
    delivered, stream, sequence = meta.num_delivered, meta.stream, meta.sequence.stream
    subject = listener.subject.value
    where = f"{subject} seq={sequence} {describe(subject, msg.data)} delivery={delivered}"

    async def record(error: str) -> None:
        await run_db(
            record_failure,
            subject=subject,
            stream=stream,
            sequence=sequence,
            data=msg.data,
            error=error,
            delivered=delivered,
        )

    async def set_aside(error: str) -> str:
        await record(error)
        await msg.term()
        logger.error("rejected %s: %s", where, error)
        return "rejected"

    try:
        event = listener.event_type.from_bytes(msg.data)
    except InvalidEvent as exc:
        return await set_aside(str(exc))

    def apply() -> str:
        # One transaction for the whole handler: a failure halfway leaves nothing to redeliver onto.
        with transaction.atomic():
            return listener.handle(event)

    try:
        result = await run_db(apply)
    except NotYet as exc:
        if delivered >= settings.EVENT_MAX_DELIVERIES:
            # Still waiting: make the stall visible to an operator, but keep waiting.
            await record(f"waiting: {exc}")
        await msg.nak(delay=retry_delay(delivered))
        logger.info("waiting %s: %s", where, exc)
        return "waiting"
    except Rejected as exc:
        return await set_aside(str(exc))
    except (OperationalError, InterfaceError) as exc:
        # The database is unreachable: not the event's fault, so this never makes it poison.
        await msg.nak(delay=retry_delay(delivered))
        logger.warning("database unavailable for %s: %s", where, exc)
        return "retrying"
    except Exception as exc:
        if delivered >= settings.EVENT_MAX_DELIVERIES:
            return await set_aside(f"{type(exc).__name__}: {exc} (after {delivered} deliveries)")
        await msg.nak(delay=retry_delay(delivered))
        log = logger.info if isinstance(exc, RetryLater) else logger.exception
        log("retrying %s: %s", where, exc)
        return "retrying"

    if delivered > settings.EVENT_MAX_DELIVERIES:
        await run_db(resolve_failure, stream=stream, sequence=sequence)
    await msg.ack()
    logger.info("%s %s", result, where)
    return result
