"""The expiration safety net: overdue orders are expired once, exactly as the listener would."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from messaging.models import OutboxEvent
from messaging.order_status import OrderStatus
from orders.expiration import expire_overdue_orders
from orders.models import Order


def make_order(ticket, *, status: str = OrderStatus.CREATED, expired_ago: dt.timedelta) -> Order:
    return Order.objects.create(user_id="u1", ticket=ticket, status=status, expires_at=timezone.now() - expired_ago)


def cancellations(order: Order) -> list[dict]:
    return [e.payload for e in OutboxEvent.objects.filter(subject="order:cancelled") if e.payload["id"] == order.id]


@pytest.mark.django_db
def test_an_active_order_past_the_grace_period_is_expired_with_one_event(make_ticket):
    created = make_order(make_ticket(), expired_ago=dt.timedelta(seconds=301))
    awaiting = make_order(make_ticket(), status=OrderStatus.AWAITING_PAYMENT, expired_ago=dt.timedelta(hours=2))

    assert expire_overdue_orders(grace_seconds=300) == 2

    for order in (created, awaiting):
        order.refresh_from_db()
        assert (order.status, order.version) == (OrderStatus.CANCELLED, 1)
        assert cancellations(order) == [{"id": order.id, "version": 1, "ticket": {"id": order.ticket_id}}]


@pytest.mark.django_db
def test_orders_within_the_grace_period_or_no_longer_active_are_left_alone(make_ticket):
    waiting = make_order(make_ticket(), expired_ago=dt.timedelta(seconds=200))
    not_yet = make_order(make_ticket(), expired_ago=-dt.timedelta(minutes=10))
    complete = make_order(make_ticket(), status=OrderStatus.COMPLETE, expired_ago=dt.timedelta(hours=1))
    cancelled = make_order(make_ticket(), status=OrderStatus.CANCELLED, expired_ago=dt.timedelta(hours=1))

    assert expire_overdue_orders(grace_seconds=300) == 0

    for order, status in ((waiting, "created"), (not_yet, "created"), (complete, "complete"), (cancelled, "cancelled")):
        order.refresh_from_db()
        assert (order.status, order.version) == (status, 0)
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_a_second_sweep_changes_nothing(make_ticket):
    order = make_order(make_ticket(), expired_ago=dt.timedelta(hours=1))
    assert expire_overdue_orders(grace_seconds=300) == 1
    assert expire_overdue_orders(grace_seconds=300) == 0
    assert len(cancellations(order)) == 1


@pytest.mark.django_db
def test_the_grace_period_comes_from_settings(make_ticket, settings):
    settings.EXPIRATION_GRACE_SECONDS = 60
    order = make_order(make_ticket(), expired_ago=dt.timedelta(seconds=90))
    assert expire_overdue_orders() == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_several_worker_replicas_sweeping_at_once_expire_each_order_once(make_ticket):
    orders = [make_order(make_ticket(), expired_ago=dt.timedelta(hours=1)) for _ in range(30)]
    results: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def sweep() -> None:
        try:
            start.wait()
            results.append(expire_overdue_orders(grace_seconds=300))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(results) == 30
    for order in orders:
        order.refresh_from_db()
        assert (order.status, order.version) == (OrderStatus.CANCELLED, 1)
        assert len(cancellations(order)) == 1
