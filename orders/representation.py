"""Orders in JSON: one shape (OrderDict), one builder (order_to_dict), one encoder."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, TypedDict

from core.json_numbers import json_number
from orders.models import Order


class TicketDict(TypedDict):
    id: str
    title: str
    price: float | int
    version: int


class OrderDict(TypedDict):
    """An order as the API answers it (contract section 2)."""

    id: str
    userId: str
    status: str
    expiresAt: str
    ticket: TicketDict
    version: int


class OrderRow(TypedDict):
    """What `Order.objects.values(*ORDER_ROW_FIELDS)` gives: everything OrderDict needs, nothing more."""

    id: str
    user_id: str
    status: str
    expires_at: dt.datetime
    version: int
    ticket_id: str
    ticket__title: str
    ticket__price: float
    ticket__version: int


ORDER_ROW_FIELDS = (
    "id",
    "user_id",
    "status",
    "expires_at",
    "version",
    "ticket_id",
    "ticket__title",
    "ticket__price",
    "ticket__version",
)


def to_iso_z(value: dt.datetime) -> str:
    """JavaScript's Date.toISOString(): UTC, milliseconds, `Z`."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_to_dict(row: OrderRow) -> OrderDict:
    """The one builder of the API's order JSON, from a `.values()` row or `order_row(order)`."""
    return {
        "id": row["id"],
        "userId": row["user_id"],
        "status": row["status"],
        "expiresAt": to_iso_z(row["expires_at"]),
        "ticket": {
            "id": row["ticket_id"],
            "title": row["ticket__title"],
            "price": json_number(row["ticket__price"]),
            "version": row["ticket__version"],
        },
        "version": row["version"],
    }


def order_row(order: Order) -> OrderRow:
    """A model instance (with its ticket) as the row order_to_dict() takes."""
    ticket = order.ticket
    return {
        "id": order.id,
        "user_id": order.user_id,
        "status": order.status,
        "expires_at": order.expires_at,
        "version": order.version,
        "ticket_id": ticket.id,
        "ticket__title": ticket.title,
        "ticket__price": ticket.price,
        "ticket__version": ticket.version,
    }


# DRF's JSONRenderer with the project's settings (UNICODE_JSON, COMPACT_JSON, STRICT_JSON on):
# UTF-8, no spaces, no NaN, and U+2028/U+2029 escaped for JavaScript.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def render_json(data: Any) -> bytes:
    """The bytes DRF's JSONRenderer writes for `data`, without building a renderer per response."""
    return _ENCODER.encode(data).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()
