"""Orders in JSON: one shape (OrderDict), one builder (order_to_dict), one encoder."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, NamedTuple, TypedDict

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


class OrderRow(NamedTuple):
    """What the selectors give: everything OrderDict needs and nothing more, in ORDER_ROW_FIELDS order (a row of
    `Order.objects.values_list(*ORDER_ROW_FIELDS)`), with `expires_at` already as the API writes it (to_iso_z)."""

    id: str
    user_id: str
    status: str
    expires_at: str
    version: int
    ticket_id: str
    ticket__title: str
    ticket__price: float
    ticket__version: int


ORDER_ROW_FIELDS = OrderRow._fields


def to_iso_z(value: dt.datetime) -> str:
    """JavaScript's Date.toISOString(): UTC, milliseconds, `Z`."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_to_dict(row: OrderRow) -> OrderDict:
    """The one builder of the API's order JSON, from a selector's row or `order_row(order)`."""
    return {
        "id": row.id,
        "userId": row.user_id,
        "status": row.status,
        "expiresAt": row.expires_at,
        "ticket": {
            "id": row.ticket_id,
            "title": row.ticket__title,
            "price": json_number(row.ticket__price),
            "version": row.ticket__version,
        },
        "version": row.version,
    }


def order_row(order: Order) -> OrderRow:
    """A model instance (with its ticket) as the row order_to_dict() takes."""
    ticket = order.ticket
    return OrderRow(
        order.id,
        order.user_id,
        order.status,
        to_iso_z(order.expires_at),
        order.version,
        ticket.id,
        ticket.title,
        ticket.price,
        ticket.version,
    )


# DRF's JSONRenderer with the project's settings (UNICODE_JSON, COMPACT_JSON, STRICT_JSON on):
# UTF-8, no spaces, no NaN, and U+2028/U+2029 escaped for JavaScript.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def render_json(data: Any) -> bytes:
    """The bytes DRF's JSONRenderer writes for `data`, without building a renderer per response."""
    return _ENCODER.encode(data).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()
