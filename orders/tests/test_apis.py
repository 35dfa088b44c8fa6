"""The orders HTTP API, route by route, as the contract's section 2 and the Node service's tests say."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.ids import new_object_id
from messaging.models import OutboxEvent
from messaging.order_status import OrderStatus
from orders.models import Order
from tickets_replica.models import Ticket

pytestmark = pytest.mark.django_db

ISO_MILLIS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NOT_FOUND = {"errors": [{"message": "Not Found"}]}
NOT_AUTHORIZED = {"errors": [{"message": "Not authorized"}]}
ALREADY_RESERVED = {"errors": [{"message": "Ticket is already reserved"}]}
CANNOT_CANCEL_COMPLETE = {"errors": [{"message": "Cannot cancel a completed order"}]}
TICKET_ID_REQUIRED = {"errors": [{"message": "TicketId must be provided", "field": "ticketId"}]}


def reserve(client: APIClient, ticket_id, path: str = "/api/orders"):
    return client.post(path, {"ticketId": ticket_id}, format="json")


def post_json(client: APIClient, body):
    return client.generic("POST", "/api/orders", json.dumps(body), "application/json")


def outbox(subject: str) -> list[dict]:
    return [row.payload for row in OutboxEvent.objects.filter(subject=subject).order_by("created_at", "id")]


def parse_iso_z(value: str) -> dt.datetime:
    assert ISO_MILLIS_Z.match(value), value
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def make_order(ticket, user_id: str | None = None, status: str = OrderStatus.CREATED, version: int = 0) -> Order:
    return Order.objects.create(
        user_id=user_id or new_object_id(),
        ticket=ticket,
        status=status,
        version=version,
        expires_at=timezone.now() + dt.timedelta(minutes=15),
    )


# --- POST /api/orders ---------------------------------------------------------------------------


def test_reserving_a_ticket_that_does_not_exist_is_404(signed_in):
    response = reserve(signed_in, new_object_id())

    assert (response.status_code, response.json()) == (404, NOT_FOUND)
    assert not Order.objects.exists()
    assert not OutboxEvent.objects.exists()


@pytest.mark.parametrize("status", [OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT, OrderStatus.COMPLETE])
def test_reserving_a_ticket_already_reserved_is_400(signed_in, make_ticket, status):
    ticket = make_ticket()
    existing = make_order(ticket, status=status)

    response = reserve(signed_in, ticket.id)

    assert (response.status_code, response.json()) == (400, ALREADY_RESERVED)
    assert list(Order.objects.values_list("id", flat=True)) == [existing.id]
    assert not OutboxEvent.objects.exists()


def test_reserving_a_ticket_you_already_reserved_is_400_too(signed_in, make_ticket):
    ticket = make_ticket()
    assert reserve(signed_in, ticket.id).status_code == 201

    response = reserve(signed_in, ticket.id)

    assert (response.status_code, response.json()) == (400, ALREADY_RESERVED)
    assert Order.objects.count() == 1
    assert len(outbox("order:created")) == 1


def test_reserves_a_ticket_201_the_order_and_order_created_in_the_outbox(signed_in, make_ticket):
    ticket = make_ticket(title="concert", price=20, version=3)
    before = timezone.now()

    response = reserve(signed_in, ticket.id)

    after = timezone.now()
    assert response.status_code == 201, response.content
    body = response.json()
    order = Order.objects.get()
    assert body == {
        "id": order.id,
        "userId": signed_in.user_id,
        "status": "created",
        "expiresAt": body["expiresAt"],
        "ticket": {"id": ticket.id, "title": "concert", "price": 20, "version": 3},
        "version": 0,
    }
    assert re.fullmatch(r"[0-9a-f]{24}", order.id)
    assert (order.user_id, order.ticket_id, order.status, order.version) == (signed_in.user_id, ticket.id, "created", 0)
    expires_at = parse_iso_z(body["expiresAt"])
    assert before + dt.timedelta(seconds=900) - dt.timedelta(milliseconds=1) <= expires_at
    assert expires_at <= after + dt.timedelta(seconds=900)
    assert abs(order.expires_at - expires_at) < dt.timedelta(milliseconds=1)
    assert outbox("order:created") == [
        {
            "id": order.id,
            "version": 0,
            "status": "created",
            "userId": signed_in.user_id,
            "expiresAt": body["expiresAt"],
            "ticket": {"id": ticket.id, "price": 20},
        }
    ]
    assert OutboxEvent.objects.get().sent_at is None
    assert not OutboxEvent.objects.exclude(subject="order:created").exists()


@pytest.mark.parametrize("window", [900, 60, 3600])
def test_expires_at_is_the_expiration_window_after_now(signed_in, make_ticket, settings, window):
    settings.EXPIRATION_WINDOW_SECONDS = window
    ticket = make_ticket()
    before = timezone.now()

    response = reserve(signed_in, ticket.id)

    after = timezone.now()
    expires_at = parse_iso_z(response.json()["expiresAt"])
    assert before + dt.timedelta(seconds=window, milliseconds=-1) <= expires_at <= after + dt.timedelta(seconds=window)
    assert outbox("order:created")[0]["expiresAt"] == response.json()["expiresAt"]


def test_the_expiration_window_is_900_seconds_unless_the_environment_says_otherwise(monkeypatch):
    from ticketing_orders import settings as settings_module

    try:
        monkeypatch.delenv("EXPIRATION_WINDOW_SECONDS", raising=False)
        assert importlib.reload(settings_module).EXPIRATION_WINDOW_SECONDS == 900
        monkeypatch.setenv("EXPIRATION_WINDOW_SECONDS", "60")
        assert importlib.reload(settings_module).EXPIRATION_WINDOW_SECONDS == 60
    finally:
        monkeypatch.undo()
        importlib.reload(settings_module)


@pytest.mark.parametrize(("price", "raw"), [(20, b'"price":20,'), (10.5, b'"price":10.5,'), (0, b'"price":0,')])
def test_price_is_a_json_number_as_javascript_prints_it(signed_in, make_ticket, price, raw):
    ticket = make_ticket(price=price)

    response = reserve(signed_in, ticket.id)

    assert raw in response.content
    assert response.json()["ticket"]["price"] == price
    assert type(response.json()["ticket"]["price"]) is type(price)
    assert outbox("order:created")[0]["ticket"] == {"id": ticket.id, "price": price}
    assert type(outbox("order:created")[0]["ticket"]["price"]) is type(price)


def test_a_cancelled_orders_ticket_can_be_reserved_again(signed_in, other_user, make_ticket):
    ticket = make_ticket()
    first = reserve(other_user, ticket.id).json()
    assert other_user.delete(f"/api/orders/{first['id']}").status_code == 204

    response = reserve(signed_in, ticket.id)

    assert response.status_code == 201, response.content
    assert response.json()["userId"] == signed_in.user_id
    assert sorted(Order.objects.values_list("status", flat=True)) == ["cancelled", "created"]
    assert len(outbox("order:created")) == 2


def test_reserving_with_the_ticket_id_alias_ticketID(signed_in, make_ticket):
    ticket = make_ticket()

    response = post_json(signed_in, {"ticketID": ticket.id})

    assert response.status_code == 201, response.content
    assert response.json()["ticket"]["id"] == ticket.id


def test_ticketId_wins_over_the_alias_when_both_are_sent(signed_in, make_ticket):
    ticket, other = make_ticket(), make_ticket()

    response = post_json(signed_in, {"ticketId": ticket.id, "ticketID": other.id})

    assert response.status_code == 201, response.content
    assert response.json()["ticket"]["id"] == ticket.id


def test_uppercase_hex_ticket_id_is_accepted(signed_in, make_ticket):
    ticket = make_ticket()

    response = reserve(signed_in, ticket.id.upper())

    assert response.status_code == 201, response.content
    assert response.json()["ticket"]["id"] == ticket.id
    assert Order.objects.get().ticket_id == ticket.id


def test_fields_other_than_ticketId_are_ignored(signed_in, make_ticket):
    ticket = make_ticket(price=20)

    response = post_json(
        signed_in,
        {
            "ticketId": ticket.id,
            "userId": "someone-else",
            "status": "complete",
            "version": 7,
            "expiresAt": "2000-01-01T00:00:00.000Z",
            "ticket": {"id": ticket.id, "price": 0},
        },
    )

    body = response.json()
    assert response.status_code == 201, response.content
    assert (body["userId"], body["status"], body["version"], body["ticket"]["price"]) == (
        signed_in.user_id,
        "created",
        0,
        20,
    )
    assert parse_iso_z(body["expiresAt"]) > timezone.now()


VALID_LOOKING = "65f0c0ffee0000000000abcd"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ticketId": ""},
        {"ticketId": None},
        {"ticketId": 123},
        {"ticketId": 123456789012345678901234},
        {"ticketId": 6.5e23},
        {"ticketId": True},
        {"ticketId": []},
        {"ticketId": [VALID_LOOKING]},
        {"ticketId": {"id": VALID_LOOKING}},
        {"ticketId": "abc"},
        {"ticketId": VALID_LOOKING[:23]},
        {"ticketId": VALID_LOOKING + "e"},
        {"ticketId": "zzzzzzzzzzzzzzzzzzzzzzzz"},
        {"ticketId": "65f0c0ffee0000000000abcg"},
        {"ticketId": f" {VALID_LOOKING}"},
        {"ticketId": f"{VALID_LOOKING} "},
        {"ticketId": f"{VALID_LOOKING}\n"},
        {"ticketId": f"0x{VALID_LOOKING[2:]}"},
        {"ticketId": "\uff16\uff15f0c0ffee0000000000abcd"},  # fullwidth digits: \d would take them
        {"ticketid": VALID_LOOKING},
        {"ticket_id": VALID_LOOKING},
        {"ticketID": None},
        {"ticketID": ""},
        {"ticketID": 123456789012345678901234},
        {"ticketId": None, "ticketID": VALID_LOOKING},
        # A body that is not an object has no ticketId either.
        [],
        [{"ticketId": VALID_LOOKING}],
        VALID_LOOKING,
        1,
        None,
        True,
        0.5,
    ],
    ids=repr,
)
def test_missing_or_invalid_ticket_id_is_400_with_the_field(signed_in, make_ticket, body):
    # The ticket exists, so only validation can refuse the ids that look like it.
    make_ticket(id=VALID_LOOKING)

    response = post_json(signed_in, body)

    assert (response.status_code, response.json()) == (400, TICKET_ID_REQUIRED)
    assert not Order.objects.exists()


def test_an_empty_json_body_is_400_ticket_id_must_be_provided(signed_in):
    response = signed_in.generic("POST", "/api/orders", b"", "application/json")

    assert (response.status_code, response.json()) == (400, TICKET_ID_REQUIRED)


def test_validation_comes_before_the_ticket_lookup(signed_in):
    response = reserve(signed_in, "not-an-id")

    assert (response.status_code, response.json()) == (400, TICKET_ID_REQUIRED)


# --- GET /api/orders ----------------------------------------------------------------------------


def test_listing_with_no_orders_is_an_empty_array(signed_in):
    response = signed_in.get("/api/orders")

    assert (response.status_code, response.json()) == (200, [])


def test_fetches_orders_for_a_particular_user_oldest_first(signed_in, other_user, make_ticket):
    one, two, three = make_ticket(title="one"), make_ticket(title="two", price=10.5), make_ticket(title="three")
    reserve(other_user, one.id)
    first = reserve(signed_in, two.id).json()
    second = reserve(signed_in, three.id).json()

    response = signed_in.get("/api/orders")

    assert response.status_code == 200
    assert response.json() == [first, second]
    assert [o["ticket"]["id"] for o in response.json()] == [two.id, three.id]
    assert [o["ticket"] for o in response.json()] == [
        {"id": two.id, "title": "two", "price": 10.5, "version": 0},
        {"id": three.id, "title": "three", "price": 20, "version": 0},
    ]
    assert [o["userId"] for o in other_user.get("/api/orders").json()] == [other_user.user_id]


def test_orders_are_listed_by_creation_time_not_by_id(signed_in, make_ticket):
    tickets = [make_ticket() for _ in range(3)]
    orders = [make_order(ticket, user_id=signed_in.user_id) for ticket in tickets]
    # Created in reverse of id order (ids sort by their own clock, created_at by the database's).
    now = timezone.now()
    for age, order in enumerate(orders):
        Order.objects.filter(id=order.id).update(created_at=now - dt.timedelta(minutes=age))

    response = signed_in.get("/api/orders")

    assert [o["id"] for o in response.json()] == [orders[2].id, orders[1].id, orders[0].id]


def test_listing_shows_every_status_and_the_current_ticket(signed_in, make_ticket):
    statuses = [OrderStatus.CANCELLED, OrderStatus.AWAITING_PAYMENT, OrderStatus.COMPLETE]
    orders = [make_order(make_ticket(), user_id=signed_in.user_id, status=s, version=2) for s in statuses]
    Ticket.objects.filter(id=orders[0].ticket_id).update(title="renamed", price=99.99, version=4)

    response = signed_in.get("/api/orders/")

    body = response.json()
    assert [(o["id"], o["status"], o["version"]) for o in body] == [
        (orders[0].id, "cancelled", 2),
        (orders[1].id, "awaiting:payment", 2),
        (orders[2].id, "complete", 2),
    ]
    assert body[0]["ticket"] == {"id": orders[0].ticket_id, "title": "renamed", "price": 99.99, "version": 4}


# --- GET /api/orders/:id ------------------------------------------------------------------------


def test_fetches_the_order(signed_in, make_ticket):
    ticket = make_ticket()
    created = reserve(signed_in, ticket.id).json()

    response = signed_in.get(f"/api/orders/{created['id']}")

    assert (response.status_code, response.json()) == (200, created)


def test_fetching_the_order_with_an_uppercase_id_finds_it(signed_in, make_ticket):
    created = reserve(signed_in, make_ticket().id).json()

    response = signed_in.get(f"/api/orders/{created['id'].upper()}")

    assert (response.status_code, response.json()) == (200, created)


def test_fetching_another_users_order_is_401(signed_in, other_user, make_ticket):
    created = reserve(other_user, make_ticket().id).json()

    response = signed_in.get(f"/api/orders/{created['id']}")

    assert (response.status_code, response.json()) == (401, NOT_AUTHORIZED)


def test_fetching_an_order_when_not_signed_in_is_401(signed_in, make_ticket):
    created = reserve(signed_in, make_ticket().id).json()

    response = APIClient().get(f"/api/orders/{created['id']}")

    assert (response.status_code, response.json()) == (401, NOT_AUTHORIZED)


MALFORMED_ORDER_IDS = [
    "abc",
    "123",
    "65f0c0ffee0000000000abc",
    "65f0c0ffee0000000000abcde",
    "zzzzzzzzzzzzzzzzzzzzzzzz",
    "65f0c0ffee0000000000abcd%0A",
    "65f0c0ffee0000000000abcd%20",
    "%00",
    "%ff%fe",
    "null",
    "undefined",
    "..",
    "%2e%2e",
    "'%20OR%201=1--",
]


@pytest.mark.parametrize("order_id", MALFORMED_ORDER_IDS)
@pytest.mark.parametrize("method", ["get", "delete"])
def test_malformed_order_id_is_404(signed_in, make_ticket, method, order_id):
    # An order exists whose id a sloppy check could confuse with the malformed one.
    Order.objects.create(id=VALID_LOOKING, user_id=signed_in.user_id, ticket=make_ticket(), expires_at=timezone.now())

    response = getattr(signed_in, method)(f"/api/orders/{order_id}")

    assert (response.status_code, response.json()) == (404, NOT_FOUND)
    assert set(Order.objects.values_list("status", flat=True)) == {"created"}


@pytest.mark.parametrize("method", ["get", "delete"])
def test_unknown_order_id_is_404(signed_in, method):
    response = getattr(signed_in, method)(f"/api/orders/{new_object_id()}")

    assert (response.status_code, response.json()) == (404, NOT_FOUND)


# --- DELETE /api/orders/:id ---------------------------------------------------------------------


def test_marks_an_order_as_cancelled(signed_in, make_ticket):
    ticket = make_ticket()
    created = reserve(signed_in, ticket.id).json()

    response = signed_in.delete(f"/api/orders/{created['id']}")

    assert response.status_code == 204
    assert response.content == b""
    order = Order.objects.get(id=created["id"])
    assert (order.status, order.version) == ("cancelled", 1)
    assert signed_in.get(f"/api/orders/{created['id']}").json() == {**created, "status": "cancelled", "version": 1}
    assert outbox("order:cancelled") == [{"id": created["id"], "version": 1, "ticket": {"id": ticket.id}}]


def test_cancelling_a_cancelled_order_is_204_and_publishes_nothing(signed_in, make_ticket):
    created = reserve(signed_in, make_ticket().id).json()
    assert signed_in.delete(f"/api/orders/{created['id']}").status_code == 204

    response = signed_in.delete(f"/api/orders/{created['id']}")

    assert (response.status_code, response.content) == (204, b"")
    assert Order.objects.filter(id=created["id"]).values_list("status", "version").get() == ("cancelled", 1)
    assert len(outbox("order:cancelled")) == 1


def test_cancelling_a_complete_order_is_400(signed_in, make_ticket):
    order = make_order(make_ticket(), user_id=signed_in.user_id, status=OrderStatus.COMPLETE, version=1)

    response = signed_in.delete(f"/api/orders/{order.id}")

    assert (response.status_code, response.json()) == (400, CANNOT_CANCEL_COMPLETE)
    assert Order.objects.filter(id=order.id).values_list("status", "version").get() == ("complete", 1)
    assert not OutboxEvent.objects.exists()


def test_an_awaiting_payment_order_can_be_cancelled(signed_in, make_ticket):
    ticket = make_ticket()
    order = make_order(ticket, user_id=signed_in.user_id, status=OrderStatus.AWAITING_PAYMENT, version=1)

    response = signed_in.delete(f"/api/orders/{order.id}/")

    assert (response.status_code, response.content) == (204, b"")
    assert Order.objects.filter(id=order.id).values_list("status", "version").get() == ("cancelled", 2)
    assert outbox("order:cancelled") == [{"id": order.id, "version": 2, "ticket": {"id": ticket.id}}]


def test_cancelling_another_users_order_is_401_and_changes_nothing(signed_in, other_user, make_ticket):
    created = reserve(other_user, make_ticket().id).json()

    response = signed_in.delete(f"/api/orders/{created['id']}")

    assert (response.status_code, response.json()) == (401, NOT_AUTHORIZED)
    assert Order.objects.filter(id=created["id"]).values_list("status", "version").get() == ("created", 0)
    assert not outbox("order:cancelled")


def test_cancelling_when_not_signed_in_is_401(signed_in, make_ticket):
    created = reserve(signed_in, make_ticket().id).json()

    response = APIClient().delete(f"/api/orders/{created['id']}")

    assert (response.status_code, response.json()) == (401, NOT_AUTHORIZED)
    assert Order.objects.get(id=created["id"]).status == "created"


def test_cancelling_with_an_uppercase_id_cancels_the_order(signed_in, make_ticket):
    created = reserve(signed_in, make_ticket().id).json()

    response = signed_in.delete(f"/api/orders/{created['id'].upper()}")

    assert response.status_code == 204
    assert Order.objects.get(id=created["id"]).status == "cancelled"
    assert [p["id"] for p in outbox("order:cancelled")] == [created["id"]]


# --- trailing slashes ---------------------------------------------------------------------------


def test_every_route_works_with_and_without_a_trailing_slash(signed_in, make_ticket):
    with_slash = reserve(signed_in, make_ticket().id, path="/api/orders/")
    without = reserve(signed_in, make_ticket().id, path="/api/orders")
    assert (with_slash.status_code, without.status_code) == (201, 201)
    first, second = with_slash.json(), without.json()

    assert signed_in.get("/api/orders/").json() == signed_in.get("/api/orders").json() == [first, second]
    assert signed_in.get(f"/api/orders/{first['id']}/").json() == signed_in.get(f"/api/orders/{first['id']}").json()
    assert signed_in.delete(f"/api/orders/{first['id']}/").status_code == 204
    assert signed_in.delete(f"/api/orders/{second['id']}").status_code == 204
    assert sorted(p["id"] for p in outbox("order:cancelled")) == sorted([first["id"], second["id"]])


def test_requests_are_never_redirected(signed_in, make_ticket):
    ticket = make_ticket()
    responses = [
        reserve(signed_in, ticket.id, path="/api/orders/"),
        signed_in.get("/api/orders"),
        signed_in.get("/api/orders/"),
    ]

    assert [r.status_code for r in responses] == [201, 200, 200]
