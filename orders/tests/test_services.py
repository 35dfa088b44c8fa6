"""The order services and selectors: every change to an order, and the events it writes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.ids import new_object_id
from messaging.models import OutboxEvent
from messaging.order_status import OrderStatus
from orders.exceptions import CannotCancelCompletedOrder, OrderNotFound, TicketAlreadyReserved, TicketNotFound
from orders.models import Order
from orders.representation import to_iso_z
from orders.services import Outcome, order_cancel, order_cancel_by_user, order_complete, order_create
from tickets_replica.models import Ticket

pytestmark = pytest.mark.django_db


def make_order(ticket, status: str = OrderStatus.CREATED, version: int = 0, user_id: str = "user-1") -> Order:
    return Order.objects.create(
        user_id=user_id, ticket=ticket, status=status, version=version, expires_at=timezone.now()
    )


def state(order: Order) -> tuple[str, int]:
    return tuple(Order.objects.filter(id=order.id).values_list("status", "version").get())


def outbox() -> list[tuple[str, dict]]:
    return [(row.subject, row.payload) for row in OutboxEvent.objects.order_by("created_at", "id")]


# --- order_create -------------------------------------------------------------------------------


def test_order_create_reserves_the_ticket_and_writes_order_created(make_ticket, settings):
    settings.EXPIRATION_WINDOW_SECONDS = 120
    ticket = make_ticket(price=10.5)
    before = timezone.now()

    order = order_create(user_id="user-1", ticket_id=ticket.id)

    order.refresh_from_db()
    assert (order.user_id, order.ticket_id, order.status, order.version) == ("user-1", ticket.id, "created", 0)
    assert before + dt.timedelta(seconds=120) <= order.expires_at <= timezone.now() + dt.timedelta(seconds=120)
    assert ticket.is_reserved()
    assert outbox() == [
        (
            "order:created",
            {
                "id": order.id,
                "version": 0,
                "status": "created",
                "userId": "user-1",
                "expiresAt": to_iso_z(order.expires_at),
                "ticket": {"id": ticket.id, "price": 10.5},
            },
        )
    ]


def test_order_create_for_an_unknown_ticket_raises_not_found():
    with pytest.raises(TicketNotFound):
        order_create(user_id="user-1", ticket_id=new_object_id())

    assert not Order.objects.exists() and not OutboxEvent.objects.exists()


@pytest.mark.parametrize("status", [OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT, OrderStatus.COMPLETE])
def test_order_create_for_a_reserved_ticket_raises_already_reserved(make_ticket, status):
    ticket = make_ticket()
    make_order(ticket, status=status)

    with pytest.raises(TicketAlreadyReserved) as raised:
        order_create(user_id="user-2", ticket_id=ticket.id)

    assert raised.value.message == "Ticket is already reserved"
    assert Order.objects.count() == 1 and not OutboxEvent.objects.exists()


def test_when_the_check_loses_a_race_the_unique_constraint_refuses_the_second_order(make_ticket, monkeypatch):
    """What a concurrent request sees: is_reserved() said no, then the other order committed first."""
    ticket = make_ticket()
    make_order(ticket)
    monkeypatch.setattr(Ticket, "is_reserved", lambda self: False)

    with transaction.atomic():
        with pytest.raises(TicketAlreadyReserved):
            order_create(user_id="user-2", ticket_id=ticket.id)
        # The savepoint kept the surrounding transaction usable.
        assert Order.objects.count() == 1

    assert not OutboxEvent.objects.exists()


def test_the_database_allows_one_active_order_per_ticket(make_ticket):
    ticket = make_ticket()
    make_order(ticket, status=OrderStatus.CANCELLED)
    make_order(ticket, status=OrderStatus.CANCELLED)
    make_order(ticket, status=OrderStatus.CREATED)

    for status in (OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT, OrderStatus.COMPLETE):
        with pytest.raises(IntegrityError), transaction.atomic():
            make_order(ticket, status=status)

    assert Order.objects.filter(ticket=ticket).count() == 3


def test_the_database_refuses_reactivating_a_cancelled_order_of_a_reserved_ticket(make_ticket):
    ticket = make_ticket()
    cancelled = make_order(ticket, status=OrderStatus.CANCELLED)
    make_order(ticket, status=OrderStatus.AWAITING_PAYMENT)

    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(id=cancelled.id).update(status=OrderStatus.CREATED)


# --- order_cancel / order_cancel_by_user --------------------------------------------------------


@pytest.mark.parametrize("status", [OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT])
def test_order_cancel_applies_bumps_the_version_and_writes_order_cancelled(make_ticket, status):
    ticket = make_ticket()
    order = make_order(ticket, status=status, version=3)

    outcome, returned = order_cancel(order_id=order.id)

    assert outcome is Outcome.APPLIED
    assert (returned.status, returned.version) == ("cancelled", 4)
    assert state(order) == ("cancelled", 4)
    assert not ticket.is_reserved()
    assert outbox() == [("order:cancelled", {"id": order.id, "version": 4, "ticket": {"id": ticket.id}})]


@pytest.mark.parametrize(
    ("status", "outcome"), [(OrderStatus.CANCELLED, Outcome.UNCHANGED), (OrderStatus.COMPLETE, Outcome.REFUSED)]
)
def test_order_cancel_of_a_cancelled_or_complete_order_changes_nothing_and_writes_nothing(make_ticket, status, outcome):
    order = make_order(make_ticket(), status=status, version=2)

    result, returned = order_cancel(order_id=order.id)

    assert result is outcome
    assert state(order) == (status, 2) == (returned.status, returned.version)
    assert outbox() == []


def test_order_cancel_of_an_unknown_order_raises_not_found():
    with pytest.raises(OrderNotFound):
        order_cancel(order_id=new_object_id())


def test_order_cancel_twice_publishes_once(make_ticket):
    order = make_order(make_ticket())

    outcomes = [order_cancel(order_id=order.id)[0] for _ in range(3)]

    assert outcomes == [Outcome.APPLIED, Outcome.UNCHANGED, Outcome.UNCHANGED]
    assert state(order) == ("cancelled", 1)
    assert [subject for subject, _ in outbox()] == ["order:cancelled"]


def test_order_cancel_by_user_refuses_a_complete_order(make_ticket):
    order = make_order(make_ticket(), status=OrderStatus.COMPLETE)

    with pytest.raises(CannotCancelCompletedOrder) as raised:
        order_cancel_by_user(order_id=order.id)

    assert raised.value.message == "Cannot cancel a completed order"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(OrderStatus.CREATED, ("cancelled", 1)), (OrderStatus.CANCELLED, ("cancelled", 0))],
)
def test_order_cancel_by_user_returns_the_cancelled_order(make_ticket, status, expected):
    order = make_order(make_ticket(), status=status)

    returned = order_cancel_by_user(order_id=order.id)

    assert (returned.id, returned.status, returned.version) == (order.id, *expected)


# --- order_complete -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT])
def test_order_complete_applies_and_keeps_the_ticket_reserved(make_ticket, status):
    ticket = make_ticket()
    order = make_order(ticket, status=status)

    outcome, returned = order_complete(order_id=order.id)

    assert outcome is Outcome.APPLIED
    assert state(order) == ("complete", 1) == (returned.status, returned.version)
    assert ticket.is_reserved()
    assert outbox() == []


@pytest.mark.parametrize(
    ("status", "outcome"), [(OrderStatus.COMPLETE, Outcome.UNCHANGED), (OrderStatus.CANCELLED, Outcome.REFUSED)]
)
def test_order_complete_leaves_complete_and_cancelled_orders_alone(make_ticket, status, outcome):
    order = make_order(make_ticket(), status=status, version=5)

    assert order_complete(order_id=order.id)[0] is outcome
    assert state(order) == (status, 5)


def test_order_complete_of_an_unknown_order_raises_not_found():
    with pytest.raises(OrderNotFound):
        order_complete(order_id=new_object_id())
