"""Each hand-written statement gives what its ORM twin (the path MongoDB takes) gives."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from core.ids import new_object_id
from messaging.models import OutboxEvent
from messaging.order_status import OrderStatus
from orders import selectors, services
from orders.exceptions import UnknownCursor
from orders.models import Order
from orders.representation import ORDER_ROW_FIELDS, to_iso_z
from tickets_replica.models import Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def orm_only(monkeypatch):
    """Take the ORM path on this database, as a backend without SQL would."""
    monkeypatch.setattr(services, "SQL_VENDORS", frozenset())
    monkeypatch.setattr(selectors, "SQL_VENDORS", frozenset())


@pytest.fixture
def user_orders(make_ticket) -> tuple[str, list[Order]]:
    """Nine orders of one user (three created at the same instant) among other users' orders."""
    user_id, now = new_object_id(), timezone.now()
    orders = []
    for index in range(12):
        owner = user_id if index % 4 else new_object_id()
        order = Order.objects.create(
            user_id=owner,
            ticket=make_ticket(price=[20, 10.5, 0.1][index % 3], title=f"t{index}", version=index),
            status=OrderStatus.values[index % 4],
            version=index % 3,
            # A whole second (SQLite stores no fraction then), and a fraction the milliseconds cut, not round.
            expires_at=(now + dt.timedelta(minutes=index)).replace(microsecond=[0, 999_999, index * 1000][index % 3]),
        )
        Order.objects.filter(id=order.id).update(created_at=now - dt.timedelta(seconds=0 if index < 5 else index))
        if owner == user_id:
            orders.append(order)
    return user_id, orders


def orm_row(order_id: str) -> dict:
    return Order.objects.filter(id=order_id).values(*ORDER_ROW_FIELDS).get()


def test_order_row_by_id(user_orders):
    _, orders = user_orders
    for order in orders:
        row = selectors._order_row_by_id_sql(order_id=order.id)

        assert row == selectors._order_row_by_id_orm(order_id=order.id)
        # As the POST's answer and the order:created event write it (to_iso_z), whatever the fraction.
        assert row.expires_at == to_iso_z(order.expires_at)
    assert {order.expires_at.microsecond % 1000 for order in orders} == {0, 999}
    assert selectors._order_row_by_id_sql(order_id=new_object_id()) is None
    assert selectors._order_row_by_id_orm(order_id=new_object_id()) is None


def test_order_rows_for_user_every_cursor_and_limit(user_orders):
    user_id, orders = user_orders
    everything = selectors._order_rows_for_user_orm(user_id=user_id, after=None, limit=None)
    assert len(everything) == len(orders) == 9

    for after in [None, *(row.id for row in everything)]:
        for limit in [None, 1, 2, 5, 9, 10]:
            sql = selectors._order_rows_for_user_sql(user_id=user_id, after=after, limit=limit)
            orm = selectors._order_rows_for_user_orm(user_id=user_id, after=after, limit=limit)

            assert sql == orm, (after, limit)
    assert selectors._order_rows_for_user_sql(user_id=new_object_id(), after=None, limit=None) == []


@pytest.mark.parametrize("path", ["sql", "orm"])
def test_an_unknown_or_foreign_cursor_raises_on_both_paths(request, user_orders, path):
    if path == "orm":
        request.getfixturevalue("orm_only")
    user_id, _ = user_orders
    foreign = Order.objects.exclude(user_id=user_id).values_list("id", flat=True).first()

    for after in [new_object_id(), foreign]:
        with pytest.raises(UnknownCursor):
            selectors.order_rows_for_user(user_id=user_id, after=after, limit=3)
    last = selectors.order_rows_for_user(user_id=user_id)[-1].id
    assert selectors.order_rows_for_user(user_id=user_id, after=last, limit=3) == []


def test_ticket_get(make_ticket):
    for ticket in [make_ticket(price=20), make_ticket(price=10.5, title="Ünïcödé", version=7)]:
        sql, orm = services._ticket_get_sql(ticket_id=ticket.id), Ticket.objects.get(id=ticket.id)

        assert (sql.id, sql.title, sql.price, sql.version) == (orm.id, orm.title, orm.price, orm.version)
        assert type(sql.price) is type(orm.price)
    assert services._ticket_get_sql(ticket_id=new_object_id()) is None


@pytest.mark.parametrize("path", ["sql", "orm"])
@pytest.mark.parametrize("existing", [None, *OrderStatus.values])
def test_order_insert_unless_reserved(request, make_ticket, path, existing):
    if path == "orm":
        request.getfixturevalue("orm_only")
    ticket = make_ticket()
    if existing:
        Order.objects.create(user_id="someone", ticket=ticket, status=existing, expires_at=timezone.now())
    now = timezone.now()
    order = Order(
        id=new_object_id(), user_id="me", status="created", expires_at=now, ticket=ticket, version=0, created_at=now
    )
    reserved = existing in (OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT, OrderStatus.COMPLETE)

    with transaction.atomic():
        inserted = services.order_insert_unless_reserved(order=order)
        # A refusal leaves the transaction usable on both paths.
        assert Order.objects.filter(ticket=ticket).count() == (1 if existing else 0) + inserted

    assert inserted is not reserved
    if inserted:
        assert Order.objects.filter(id=order.id).values(
            "user_id", "status", "expires_at", "ticket_id", "version"
        ).get() == {
            "user_id": "me",
            "status": "created",
            "expires_at": now,
            "ticket_id": ticket.id,
            "version": 0,
        }


def created_order_shape(order: Order) -> tuple:
    row = orm_row(order.id)
    created_at = Order.objects.values_list("created_at", flat=True).get(id=order.id)
    event = OutboxEvent.objects.get(payload__id=order.id).payload
    return (
        {k: v for k, v in row.items() if k not in ("id", "expires_at", "ticket_id")},
        row["expires_at"] - created_at,
        {**event, "id": None, "expiresAt": None, "ticket": {**event["ticket"], "id": None}},
        (order.id, order.user_id, order.status, order.version, order.expires_at, order.ticket.price),
    )


def test_order_create_gives_the_same_order_and_event_on_both_paths(make_ticket, monkeypatch, settings):
    settings.EXPIRATION_WINDOW_SECONDS = 60
    by_sql = services.order_create(user_id="me", ticket_id=make_ticket(price=10.5).id)
    monkeypatch.setattr(services, "SQL_VENDORS", frozenset())
    by_orm = services.order_create(user_id="me", ticket_id=make_ticket(price=10.5).id)

    sql_shape, orm_shape = created_order_shape(by_sql), created_order_shape(by_orm)

    assert sql_shape[0] == orm_shape[0]
    assert sql_shape[2] == orm_shape[2]
    # The ORM's auto_now_add takes its own clock reading at the INSERT, a moment after ours.
    assert orm_shape[1] <= dt.timedelta(seconds=60)
    assert sql_shape[1] == dt.timedelta(seconds=60)
    for order in (by_sql, by_orm):
        order.refresh_from_db()
        assert created_order_shape(order)[3][1:] == ("me", "created", 0, order.expires_at, 10.5)
