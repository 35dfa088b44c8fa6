"""What happens on `expiration:complete` and `payment:created`."""

from __future__ import annotations

from messaging.events import ExpirationComplete, PaymentCreated, Subject
from messaging.listener import Listener, Rejected, RetryLater
from orders.exceptions import OrderNotFound
from orders.services import Outcome, order_cancel, order_complete


def on_expiration_complete(event: ExpirationComplete) -> str:
    """Cancel the order if it still holds its ticket (publishing `order:cancelled`); else change nothing."""
    try:
        outcome, _ = order_cancel(order_id=event.orderId)
    except OrderNotFound as exc:
        raise RetryLater(f"order {event.orderId} does not exist") from exc
    return "applied" if outcome is Outcome.APPLIED else "ignored"


def on_payment_created(event: PaymentCreated) -> str:
    """Mark the order complete. A payment for a cancelled order is set aside for an operator."""
    try:
        outcome, order = order_complete(order_id=event.orderId)
    except OrderNotFound as exc:
        raise RetryLater(f"order {event.orderId} does not exist") from exc
    if outcome is Outcome.REFUSED:
        raise Rejected(f"payment {event.id} is for order {order.id}, which is {order.status}")
    return "applied" if outcome is Outcome.APPLIED else "ignored"


LISTENERS = [
    Listener(Subject.EXPIRATION_COMPLETE, on_expiration_complete),
    Listener(Subject.PAYMENT_CREATED, on_payment_created),
]
