"""order_to_dict() and render_json() give the bytes OrderSerializer and DRF's JSONRenderer gave."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from core.ids import new_object_id
from messaging.models import OutboxEvent
from messaging.order_status import OrderStatus
from orders.models import Order
from orders.representation import order_row, order_to_dict, render_json, to_iso_z
from orders.selectors import order_row_by_id
from orders.serializers import OrderSerializer
from orders.services import order_create, order_created_event

pytestmark = pytest.mark.django_db

PRICES = [20, 10.5, 0, 99.99, 0.1, 1e21, 123456789.125]
TITLES = ["concert", "Ünïcödé ☃ 演唱会", 'quote " and \\ backslash', "line\u2028separator\u2029", "</script>"]


@pytest.fixture
def orders(make_ticket) -> list[Order]:
    """Every status, integer and fractional prices, awkward titles, expiry times with and without ms."""
    made = []
    for index, (status, price) in enumerate((status, price) for status in OrderStatus.values for price in PRICES):
        ticket = make_ticket(title=TITLES[index % len(TITLES)], price=price, version=index % 3)
        expires_at = timezone.now() + dt.timedelta(minutes=index, microseconds=0 if index % 2 else 123456)
        made.append(
            Order.objects.create(
                user_id=new_object_id(), ticket=ticket, status=status, version=index % 4, expires_at=expires_at
            )
        )
    return made


def old_bytes(data) -> bytes:
    return JSONRenderer().render(data)


def test_one_order_gives_the_same_bytes_as_the_serializer(orders):
    assert {o.status for o in orders} == set(OrderStatus.values)
    for order in Order.objects.select_related("ticket"):
        row = order_row_by_id(order_id=order.id)

        assert render_json(order_to_dict(row)) == old_bytes(OrderSerializer(order).data)
        assert render_json(order_to_dict(order_row(order))) == old_bytes(OrderSerializer(order).data)


def test_a_list_gives_the_same_bytes_as_the_serializer(orders):
    queryset = Order.objects.select_related("ticket").order_by("created_at", "id")
    rows = [order_row_by_id(order_id=order.id) for order in queryset]

    new = render_json([order_to_dict(row) for row in rows])

    assert new == old_bytes(OrderSerializer(queryset, many=True).data)
    assert b"\\u2028" in new and b"\xe2\x98\x83" in new  # U+2028 escaped, other text as UTF-8
    assert render_json([]) == old_bytes([]) == b"[]"


@pytest.mark.parametrize("price", [20, 10.5, 0])
def test_the_order_created_event_says_what_the_response_says(make_ticket, price):
    ticket = make_ticket(price=price)

    order = order_create(user_id=new_object_id(), ticket_id=ticket.id)

    shown = order_to_dict(order_row(order))
    payload = OutboxEvent.objects.get().payload
    assert payload == order_created_event(shown).to_payload()
    assert payload == {
        "id": shown["id"],
        "version": 0,
        "status": "created",
        "userId": shown["userId"],
        "expiresAt": shown["expiresAt"],
        "ticket": {"id": ticket.id, "price": price},
    }
    assert type(payload["ticket"]["price"]) is type(price)


# --- to_iso_z -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(2026, 11, 25, 10, 15, tzinfo=dt.UTC), "2026-11-25T10:15:00.000Z"),
        (dt.datetime(2026, 11, 25, 10, 15, 0, 123_987, tzinfo=dt.UTC), "2026-11-25T10:15:00.123Z"),
        (
            dt.datetime(2026, 11, 25, 11, 15, 30, 5_000, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
            "2026-11-25T10:15:30.005Z",
        ),
        (dt.datetime(2026, 1, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "2026-01-01T05:00:00.000Z"),
    ],
)
def test_to_iso_z_is_javascripts_to_iso_string(value, expected):
    assert to_iso_z(value) == expected
