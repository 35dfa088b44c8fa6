"""How one consumed message is applied, retried, or set aside: the unit of work of the worker."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone
from django.utils.module_loading import import_string

from core import tracing
from core.transactions import atomic
from messaging.events import EVENT_TYPES, Event, InvalidEvent, Subject, decode_json
from messaging.models import FailedEvent
from messaging.observability import HEALTH, record_outcome

logger = logging.getLogger(__name__)


class RetryLater(Exception):
    """The event cannot be applied now (e.g. unknown order); after EVENT_MAX_DELIVERIES it is poison."""


class Rejected(Exception):
    """The event can never be applied as it stands; record it for an operator at once."""


class Outcome(enum.StrEnum):
    """What became of one consumed message; `report_outcome` is told each one exactly once."""

    APPLIED = "applied"  # its effect is committed, and it was acked
    IGNORED = "ignored"  # already reflected (a repeat, an older version): acked, nothing changed
    REJECTED = "rejected"  # can never apply: recorded as a FailedEvent for an operator, and terminated
    RETRYING = "retrying"  # not applied now (unknown order, database unreachable): nak'd with a delay


@dataclasses.dataclass(frozen=True)
class Listener:
    """A subject and the function that applies its event in one transaction.

    `handle` returns a short word for the log ("applied", "ignored") or raises one of the above.
    `handle_batch`, when given, applies several events in one transaction and returns one such word
    per event, in order, with the result of calling `handle` on each one by one.
    """

    subject: Subject
    handle: Callable[[Any], str]
    handle_batch: Callable[[list[Any]], list[str]] | None = None

    @property
    def event_type(self) -> type[Event]:
        return EVENT_TYPES[self.subject]


def registered_listeners() -> dict[Subject, Listener]:
    """Every app's listeners, from settings.EVENT_LISTENERS."""
    listeners = [listener for path in settings.EVENT_LISTENERS for listener in import_string(path)]
    return {listener.subject: listener for listener in listeners}


# The thread the current worker loop runs its ORM work on (messaging.worker gives each loop its own), so
# a call that waits on a dead link holds up its own loop only; unset: asgiref's one thread-sensitive thread.
DB_EXECUTOR: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("db_executor", default=None)


async def run_db(fn: Callable, /, *args, **kwargs):
    """Run ORM work from asyncio on the loop's database thread, dropping connections that went stale
    meanwhile; a database that cannot be reached is reported to the worker's /healthz."""

    def call():
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    executor = DB_EXECUTOR.get()
    try:
        if executor is None:
            result = await sync_to_async(call, thread_sensitive=True)()
        else:
            result = await asyncio.get_running_loop().run_in_executor(executor, call)
    except (OperationalError, InterfaceError) as exc:
        HEALTH.failing("database", exc)
        raise
    HEALTH.working("database")
    return result


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


@dataclasses.dataclass(frozen=True)
class Delivery:
    """Where a message comes from and how often it was delivered, read once from its metadata."""

    subject: str
    stream: str
    sequence: int
    delivered: int
    msg_id: str = ""  # the publisher's Nats-Msg-Id, when it set one

    @classmethod
    def of(cls, listener: Listener, msg) -> Delivery:
        meta = msg.metadata
        msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
        return cls(listener.subject.value, meta.stream, meta.sequence.stream, meta.num_delivered, msg_id)


def describe(subject: str, data: bytes) -> str:
    """`id=… version=…` of a payload for the log, as far as it can be read."""
    try:
        payload = decode_json(data)
    except InvalidEvent:
        return f"bytes={len(data)}"
    if not isinstance(payload, dict):
        return "payload=not-an-object"
    return describe_fields(payload)


DESCRIBED_FIELDS = ("id", "orderId", "version")


def describe_fields(values: dict) -> str:
    return " ".join(f"{k}={values[k]}" for k in DESCRIBED_FIELDS if k in values) or "payload=?"


def describe_event(event: Event) -> str:
    """`describe` of a decoded event, without reading its JSON again."""
    fields = ((k, getattr(event, k, None)) for k in DESCRIBED_FIELDS)
    return " ".join(f"{k}={v}" for k, v in fields if v is not None) or "payload=?"


def report_outcome(
    delivery: Delivery, outcome: Outcome, *, about: str, reason: str = "", exc_info: bool = False
) -> None:
    """The one place every message's outcome passes through: the log line and the worker's counters.

    `about` says which event (`id=… version=…`), `reason` why it was rejected or is retried. The
    line's fields (subject, stream sequence, msg-id, outcome) are also record attributes, so
    LOG_FORMAT=json gives them their own keys.
    """
    record_outcome(delivery.subject, outcome.value)
    where = f"{delivery.subject} seq={delivery.sequence} {about} delivery={delivery.delivered}"
    fields = {
        "subject": delivery.subject,
        "stream_seq": delivery.sequence,
        "msg_id": delivery.msg_id or None,
        "outcome": outcome.value,
        "delivery": delivery.delivered,
    }
    if outcome is Outcome.REJECTED:
        logger.error("rejected %s: %s", where, reason, extra=fields)
    elif outcome is Outcome.RETRYING:
        level = logging.ERROR if exc_info else logging.INFO
        logger.log(level, "retrying %s: %s", where, reason, exc_info=exc_info, extra=fields)
    else:
        logger.info("%s %s", outcome.value, where, extra=fields)


async def set_aside(delivery: Delivery, msg, error: str, *, about: str) -> Outcome:
    """Record the message for an operator and terminate it, so it never blocks the ones behind it."""
    await run_db(
        record_failure,
        subject=delivery.subject,
        stream=delivery.stream,
        sequence=delivery.sequence,
        data=msg.data,
        error=error,
        delivered=delivery.delivered,
    )
    await msg.term()
    report_outcome(delivery, Outcome.REJECTED, about=about, reason=error)
    return Outcome.REJECTED


def decode_message(listener: Listener, msg) -> Event:
    """The message's event, or InvalidEvent: never worth a retry."""
    return listener.event_type.from_bytes(msg.data)


async def retry_later(delivery: Delivery, msg, reason: str, *, about: str, exc_info: bool = False) -> Outcome:
    await msg.nak(delay=retry_delay(delivery.delivered))
    report_outcome(delivery, Outcome.RETRYING, about=about, reason=reason, exc_info=exc_info)
    return Outcome.RETRYING


async def process_message(listener: Listener, msg) -> Outcome:
    """Apply one JetStream message and settle it: ack, nak with a delay, or record and terminate.

    The ack comes only after the handler's transaction has committed; handlers are idempotent, so a
    lost ack (a crash, NATS gone) leads to a redelivery that changes nothing. Returns what happened.
    """
    delivery = Delivery.of(listener, msg)
    try:
        event = decode_message(listener, msg)
    except InvalidEvent as exc:
        return await set_aside(delivery, msg, str(exc), about=describe(delivery.subject, msg.data))
    return await apply_message(listener, msg, event, delivery)


async def apply_message(listener: Listener, msg, event: Event, delivery: Delivery) -> Outcome:
    """Apply one decoded event in its own transaction and settle its message."""
    about = describe_event(event)

    def apply() -> str:
        # One transaction for the whole handler: a failure halfway leaves nothing to redeliver onto.
        # The message's trace context is current inside it, so the events it causes carry its trace id.
        with tracing.consume(delivery.subject, msg.headers), atomic():
            result = listener.handle(event)
        if delivery.delivered > settings.EVENT_MAX_DELIVERIES:
            resolve_failure(stream=delivery.stream, sequence=delivery.sequence)
        return result

    try:
        result = await run_db(apply)
    except Rejected as exc:
        return await set_aside(delivery, msg, str(exc), about=about)
    except (OperationalError, InterfaceError) as exc:
        # The database is unreachable: not the event's fault, so this never makes it poison.
        return await retry_later(delivery, msg, f"database unavailable: {exc}", about=about)
    except Exception as exc:
        if delivery.delivered >= settings.EVENT_MAX_DELIVERIES:
            error = f"{type(exc).__name__}: {exc} (after {delivery.delivered} deliveries)"
            return await set_aside(delivery, msg, error, about=about)
        return await retry_later(delivery, msg, str(exc), about=about, exc_info=not isinstance(exc, RetryLater))

    await msg.ack()
    outcome = Outcome(result)
    report_outcome(delivery, outcome, about=about)
    return outcome
