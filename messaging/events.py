"""The platform's six subjects and their payloads, validated on the way in and out."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any, ClassVar

from core.ids import is_object_id
from core.json_numbers import json_number
from core.strict_json import loads_strict
from messaging.order_status import OrderStatus


class Subject(enum.StrEnum):
    # Single tokens with a colon, as the course named them: `ticket:*` is not a wildcard.
    TICKET_CREATED = "ticket:created"
    TICKET_UPDATED = "ticket:updated"
    ORDER_CREATED = "order:created"
    ORDER_CANCELLED = "order:cancelled"
    EXPIRATION_COMPLETE = "expiration:complete"
    PAYMENT_CREATED = "payment:created"


class InvalidEvent(ValueError):
    """The message can never be applied: not JSON, or not the subject's schema."""


def decode_json(data: bytes) -> Any:
    try:
        return loads_strict(data.decode("utf-8"))
    except ValueError as exc:
        raise InvalidEvent(f"payload is not valid UTF-8 JSON: {exc}") from exc


def encode_json(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


# Field checks: each takes the raw value and returns it (normalised) or raises InvalidEvent.
def object_id(value: Any) -> str:
    if not is_object_id(value):
        raise InvalidEvent("must be a 24-hex id")
    return value.lower()


def text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidEvent("must be a non-empty string")
    return value


def version(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidEvent("must be a whole number >= 0")
    return value


def price(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidEvent("must be a finite number >= 0")
    return json_number(value)


def iso_datetime(value: Any) -> str:
    from django.utils.dateparse import parse_datetime

    if not isinstance(value, str) or parse_datetime(value.replace("Z", "+00:00")) is None:
        raise InvalidEvent("must be an ISO 8601 date-time")
    return value


def order_status(value: Any) -> str:
    if value not in OrderStatus.values:
        raise InvalidEvent(f"must be one of {', '.join(OrderStatus.values)}")
    return value


class Event:
    """Base of the payload types: `fields` names each key's check; `optional` keys may be absent."""

    subject: ClassVar[Subject]
    checks: ClassVar[dict[str, Any]]
    optional: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_payload(cls, payload: Any):
        if not isinstance(payload, dict):
            raise InvalidEvent(f"{cls.subject} payload must be a JSON object")
        values = {}
        for name, check in cls.checks.items():
            if name not in payload or payload[name] is None:
                if name in cls.optional:
                    values[name] = None
                    continue
                raise InvalidEvent(f"{cls.subject}: {name} is required")
            try:
                values[name] = check(payload[name])
            except InvalidEvent as exc:
                raise InvalidEvent(f"{cls.subject}: {name} {exc}") from None
        return cls(**values)

    @classmethod
    def from_bytes(cls, data: bytes):
        return cls.from_payload(decode_json(data))

    def to_payload(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if not (k in self.optional and v is None)}


def _nested(event_cls: type[Event]):
    def check(value: Any) -> dict:
        return event_cls.from_payload(value).to_payload()

    return check


@dataclasses.dataclass(frozen=True)
class TicketCreated(Event):
    subject = Subject.TICKET_CREATED
    checks = {"id": object_id, "version": version, "title": text, "price": price, "userId": text}
    id: str
    version: int
    title: str
    price: float
    userId: str


@dataclasses.dataclass(frozen=True)
class TicketUpdated(Event):
    subject = Subject.TICKET_UPDATED
    checks = {**TicketCreated.checks, "orderId": object_id}
    optional = frozenset({"orderId"})
    id: str
    version: int
    title: str
    price: float
    userId: str
    orderId: str | None = None


@dataclasses.dataclass(frozen=True)
class OrderTicketRef(Event):
    subject = Subject.ORDER_CREATED
    checks = {"id": object_id, "price": price}
    id: str
    price: float


@dataclasses.dataclass(frozen=True)
class TicketRef(Event):
    subject = Subject.ORDER_CANCELLED
    checks = {"id": object_id}
    id: str


@dataclasses.dataclass(frozen=True)
class OrderCreated(Event):
    subject = Subject.ORDER_CREATED
    checks = {
        "id": object_id,
        "version": version,
        "status": order_status,
        "userId": text,
        "expiresAt": iso_datetime,
        "ticket": _nested(OrderTicketRef),
    }
    id: str
    version: int
    status: str
    userId: str
    expiresAt: str
    ticket: dict


@dataclasses.dataclass(frozen=True)
class OrderCancelled(Event):
    subject = Subject.ORDER_CANCELLED
    checks = {"id": object_id, "version": version, "ticket": _nested(TicketRef)}
    id: str
    version: int
    ticket: dict


@dataclasses.dataclass(frozen=True)
class ExpirationComplete(Event):
    subject = Subject.EXPIRATION_COMPLETE
    checks = {"orderId": object_id}
    orderId: str


@dataclasses.dataclass(frozen=True)
class PaymentCreated(Event):
    subject = Subject.PAYMENT_CREATED
    checks = {"id": object_id, "orderId": object_id, "stripeId": text}
    id: str
    orderId: str
    stripeId: str


EVENT_TYPES: dict[Subject, type[Event]] = {
    cls.subject: cls
    for cls in (TicketCreated, TicketUpdated, OrderCreated, OrderCancelled, ExpirationComplete, PaymentCreated)
}


def parse_event(subject: str, data: bytes) -> Event:
    try:
        event_type = EVENT_TYPES[Subject(subject)]
    except ValueError as exc:
        raise InvalidEvent(f"unknown subject {subject!r}") from exc
    return event_type.from_bytes(data)
