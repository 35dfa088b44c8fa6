"""The expiration safety net: orders whose `expiration:complete` never came are expired by the worker."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.utils import timezone

from messaging.observability import record_expired
from orders.models import ORDER_CANCELLABLE_STATUSES, Order
from orders.services import Outcome, order_cancel

logger = logging.getLogger(__name__)


def orders_overdue(*, grace: dt.timedelta, limit: int) -> list[str]:
    """Ids of orders still holding their ticket `grace` after `expiresAt`, the oldest first."""
    cutoff = timezone.now() - grace
    return list(
        Order.objects.filter(status__in=ORDER_CANCELLABLE_STATUSES, expires_at__lt=cutoff)
        .order_by("expires_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def expire_overdue_orders(*, grace_seconds: float | None = None, limit: int = 200) -> int:
    """Expire overdue orders exactly as the `expiration:complete` listener would; returns how many.

    Each goes through order_cancel, whose conditional UPDATE decides: an order that a listener,
    a user or another worker replica cancelled (or a payment completed) meanwhile is left as it is,
    and `order:cancelled` is written once, by whoever won.
    """
    grace = dt.timedelta(seconds=settings.EXPIRATION_GRACE_SECONDS if grace_seconds is None else grace_seconds)
    expired = 0
    for order_id in orders_overdue(grace=grace, limit=limit):
        outcome, order = order_cancel(order_id=order_id)
        if outcome is Outcome.APPLIED:
            expired += 1
            logger.warning(
                "expired order id=%s: no expiration:complete %ss after expiresAt %s",
                order.id,
                int(grace.total_seconds()),
                order.expires_at.isoformat(),
            )
    return expired


def sweep_overdue_orders() -> int:
    """The worker's periodic task: expire what is overdue, in rounds until nothing is left."""
    total = 0
    while expired := expire_overdue_orders():
        total += expired
        record_expired(expired)
    return total

