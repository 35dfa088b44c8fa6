"""`expiration:complete` and `payment:created` through the real worker and nats-server."""

from __future__ import annotations

import pytest

from core.ids import new_object_id
from messaging.events import Subject
from messaging.models import FailedEvent, OutboxEvent
from messaging.order_status import OrderStatus
from orders.models import Order
from orders.services import order_create
from testsupport.waiting import wait_until

pytestmark = pytest.mark.nats


@pytest.fixture
def make_order(make_ticket):
    """An order made by the service (so its `order:created` is in the outbox), in the given status."""

    def make(status: str = OrderStatus.CREATED) -> Order:
        order = order_create(user_id=new_object_id(), ticket_id=make_ticket().id)
        Order.objects.filter(id=order.id).update(status=status)
        order.refresh_from_db()
        return order

    return make


def status_of(order: Order) -> tuple[str, int]:
    return tuple(Order.objects.filter(id=order.id).values_list("status", "version").get())


def all_sent() -> bool:
    return not OutboxEvent.objects.filter(sent_at__isnull=True).exists()


@pytest.mark.parametrize(
    ("status", "after"),
    [
        (OrderStatus.CREATED, ("cancelled", 1)),
        (OrderStatus.AWAITING_PAYMENT, ("cancelled", 1)),
        (OrderStatus.CANCELLED, ("cancelled", 0)),
        (OrderStatus.COMPLETE, ("complete", 0)),
    ],
)
def test_expiration_complete_cancels_an_active_order_publishes_order_cancelled_and_acks(
    run_worker, jetstream, make_order, status, after
):
    order = make_order(status)
    run_worker()

    jetstream.publish("expiration:complete", {"orderId": order.id})

    info = jetstream.wait_settled(Subject.EXPIRATION_COMPLETE)
    assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)
    assert status_of(order) == after
    assert not FailedEvent.objects.exists()
    wait_until(all_sent, message="the outbox to be relayed")
    assert len(jetstream.messages("order:created")) == 1  # the relay works: a cancel would be there too
    cancelled = [{"id": order.id, "version": 1, "ticket": {"id": order.ticket_id}}]
    assert jetstream.payloads("order:cancelled") == (cancelled if after == ("cancelled", 1) else [])


def test_payment_created_marks_the_order_complete_and_a_repeat_changes_nothing(run_worker, jetstream, make_order):
    order = make_order()
    run_worker()
    payment = {"id": new_object_id(), "orderId": order.id, "stripeId": "ch_123"}

    jetstream.publish("payment:created", payment)
    wait_until(lambda: status_of(order) == ("complete", 1), message="the order to be complete")
    jetstream.publish("payment:created", payment)  # another Nats-Msg-Id: a redelivery by the payments service

    info = jetstream.wait_settled(Subject.PAYMENT_CREATED)
    assert (info.num_ack_pending, info.num_redelivered) == (0, 0)
    assert info.ack_floor.stream_seq == info.delivered.stream_seq
    assert status_of(order) == ("complete", 1)
    assert not FailedEvent.objects.exists()
    assert not OutboxEvent.objects.exclude(subject="order:created").exists()


def test_payment_for_a_cancelled_order_is_recorded_and_the_order_stays_cancelled(run_worker, jetstream, make_order):
    order = make_order(OrderStatus.CANCELLED)
    run_worker()
    payment_id = new_object_id()

    ack = jetstream.publish("payment:created", {"id": payment_id, "orderId": order.id, "stripeId": "ch_1"})

    failed = wait_until(lambda: FailedEvent.objects.first(), message="the failed payment")
    assert (failed.subject, failed.stream, failed.stream_sequence) == ("payment:created", ack.stream, ack.seq)
    assert failed.error == f"payment {payment_id} is for order {order.id}, which is cancelled"
    assert failed.delivery_count == 1
    info = jetstream.wait_settled(Subject.PAYMENT_CREATED)  # terminated: not waiting for redelivery
    assert info.num_redelivered == 0
    assert status_of(order) == ("cancelled", 0)
