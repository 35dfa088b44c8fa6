"""The platform's six subjects and their payloads as pydantic models: the checks and the AsyncAPI schemas."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Annotated, Any, ClassVar, Literal, Self

import pydantic_core
from django.utils.dateparse import parse_datetime
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from core.ids import OBJECT_ID_RE
from core.json_numbers import json_number
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
    """UTF-8 JSON without NaN or Infinity anywhere (pydantic's own reader, which takes them by default)."""
    try:
        return pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        raise InvalidEvent(f"payload is not valid UTF-8 JSON: {exc}") from exc


def encode_json(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclasses.dataclass(frozen=True)
class Says:
    """How an operator reads a field's rule in a FailedEvent's error (`price must be a finite number >= 0`)."""

    rule: str


def _iso_datetime(value: str) -> str:
    if parse_datetime(value.replace("Z", "+00:00")) is None:
        raise ValueError("not an ISO 8601 date-time")
    return value


# The field types: each rule once, for the validation and for the JSON Schema of the document.
ObjectId = Annotated[
    str,
    Field(
        pattern=f"^{OBJECT_ID_RE.pattern}$",
        description="A 24-hex ObjectId, the form mongoose.Types.ObjectId.isValid accepts; read in any case.",
    ),
    AfterValidator(str.lower),
    Says("must be a 24-hex id"),
]
Text = Annotated[str, Field(min_length=1), Says("must be a non-empty string")]
Version = Annotated[
    int, Field(ge=0, description="A whole number, never a boolean."), Says("must be a whole number >= 0")
]
Price = Annotated[
    float,
    Field(ge=0, allow_inf_nan=False, description="A JSON number (20 and 20.0 are the same price)."),
    AfterValidator(json_number),
    Says("must be a finite number >= 0"),
]
IsoDateTime = Annotated[
    str,
    Field(json_schema_extra={"format": "date-time"}, description="UTC, in JavaScript's toISOString() form."),
    AfterValidator(_iso_datetime),
    Says("must be an ISO 8601 date-time"),
]
# The statuses have one home (messaging.order_status, which the Order model uses too).
ORDER_STATUSES: tuple[str, ...] = tuple(OrderStatus.values)
Status = Annotated[Literal[ORDER_STATUSES], Says(f"must be one of {', '.join(ORDER_STATUSES)}")]


class Payload(BaseModel):
    """Strict JSON types (no "1" for 1, no true for 1); keys the schema does not name are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, allow_inf_nan=False)

    def to_payload(self) -> dict:
        # Only optional fields can be None, and an absent optional field is left out, as the Node services do.
        return self.model_dump(exclude_none=True)


class Event(Payload):
    """A payload published on one subject."""

    subject: ClassVar[Subject]

    @classmethod
    def from_payload(cls, payload: Any) -> Self:
        if not isinstance(payload, dict):
            raise InvalidEvent(f"{cls.subject} payload must be a JSON object")
        try:
            return cls.model_validate(payload)
        except ValidationError as exc:
            raise InvalidEvent(f"{cls.subject}: {explain(cls, exc)}") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls.from_payload(decode_json(data))


def explain(model: type[BaseModel], exc: ValidationError) -> str:
    """The first error as `ticket.price must be a finite number >= 0`, from the field's `Says`."""
    error = exc.errors(include_url=False, include_context=False)[0]
    path: list[str] = []
    rule = "is invalid"
    for part in error["loc"]:
        field = model.model_fields.get(part) if isinstance(part, str) and model is not None else None
        if field is None:  # a union member's tag, or a key the schema does not name
            break
        path.append(part)
        says = [m for m in field.metadata if isinstance(m, Says)]
        rule = says[0].rule if says else "is invalid"
        nested = field.annotation if isinstance(field.annotation, type) else None
        model = nested if nested is not None and issubclass(nested, BaseModel) else None
        if model is not None:
            rule = "must be a JSON object"
    if error["type"] == "missing" or error.get("input", ...) is None:
        rule = "is required"
    return f"{'.'.join(path)} {rule}"


class TicketCreated(Event):
    """A ticket was put on sale (published by the tickets service)."""

    subject = Subject.TICKET_CREATED
    id: ObjectId
    version: Version
    title: Text
    price: Price
    userId: Text


OptionalObjectId = Annotated[ObjectId | None, Says("must be a 24-hex id")]


class TicketUpdated(Event):
    """The whole ticket after a change; `orderId` is set while an order holds it (tickets service)."""

    subject = Subject.TICKET_UPDATED
    id: ObjectId
    version: Version
    title: Text
    price: Price
    userId: Text
    orderId: OptionalObjectId = None


class OrderTicketRef(Payload):
    """The ordered ticket, as `order:created` names it."""

    id: ObjectId
    price: Price


class TicketRef(Payload):
    """The ticket an order held."""

    id: ObjectId


class OrderCreated(Event):
    """An order was created and holds its ticket until `expiresAt` (published by this service, version 0)."""

    subject = Subject.ORDER_CREATED
    id: ObjectId
    version: Version
    status: Status
    userId: Text
    expiresAt: IsoDateTime
    ticket: OrderTicketRef


class OrderCancelled(Event):
    """An order was cancelled, by its user or by expiration, with its new version (published by this service)."""

    subject = Subject.ORDER_CANCELLED
    id: ObjectId
    version: Version
    ticket: TicketRef


class ExpirationComplete(Event):
    """An order's time to pay is up (published by the expiration service)."""

    subject = Subject.EXPIRATION_COMPLETE
    orderId: ObjectId


class PaymentCreated(Event):
    """An order was paid (published by the payments service)."""

    subject = Subject.PAYMENT_CREATED
    id: ObjectId
    orderId: ObjectId
    stripeId: Text


class EventHeaders(BaseModel):
    """The NATS headers of an event: the de-duplication id always, the W3C trace context when there is one."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True, populate_by_name=True)

    msg_id: Annotated[
        str,
        Field(
            alias="Nats-Msg-Id",
            min_length=1,
            description="Unique per event; JetStream drops a re-send within the stream's duplicate window.",
        ),
    ]
    traceparent: Annotated[
        str | None,
        Field(
            pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$",
            description="W3C Trace Context of the request or event that caused this one.",
        ),
    ] = None


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
