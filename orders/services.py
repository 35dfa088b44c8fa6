"""Every change to an order, in one place: the API, the admin and the listeners call these."""

from __future__ import annotations

import datetime as dt
import enum
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from common.exceptions import BadRequest, NotFound
from messaging.events import OrderCancelled, OrderCreated
from messaging.outbox import outbox_enqueue
from orders.models import ORDER_CANCELLABLE_STATUSES, Order, OrderStatus
from tickets_replica.models import Ticket

logger = logging.getLogger(__name__)


class TicketAlreadyReserved(BadRequest):
    default_detail = "Ticket is already reserved"


class CannotCancelCompletedOrder(BadRequest):
    default_detail = "Cannot cancel a completed order"


class OrderNotFound(NotFound):
    pass


class TicketNotFound(NotFound):
    pass


class Outcome(enum.Enum):
    """What a state change did: the callers (view, admin, listener) decide what it means for them."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"  # already in the wanted state: a repeat, nothing to do
    REFUSED = "refused"  # the order's state forbids the change


def to_iso_z(value: dt.datetime) -> str:
    """JavaScript's Date.toISOString(): UTC, milliseconds, `Z`."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_create(*, user_id: str, ticket_id: str) -> Order:
    """Reserve `ticket_id` for `user_id` until the expiration window ends, and announce it."""
    with transaction.atomic():
        ticket = Ticket.objects.filter(id=ticket_id).first()
        if ticket is None:
            raise TicketNotFound()
        # A fast refusal for the common case; the unique constraint settles the races.
        if ticket.is_reserved():
            raise TicketAlreadyReserved()
        expires_at = timezone.now() + dt.timedelta(seconds=settings.EXPIRATION_WINDOW_SECONDS)
        try:
            with transaction.atomic():
                order = Order.objects.create(user_id=user_id, ticket=ticket, expires_at=expires_at)
        except IntegrityError as exc:
            raise TicketAlreadyReserved() from exc
        outbox_enqueue(
            event=OrderCreated(
                id=order.id,
                version=order.version,
                status=order.status,
                userId=order.user_id,
                expiresAt=to_iso_z(order.expires_at),
                ticket={"id": ticket.id, "price": ticket.price},
            )
        )
    logger.info("order created id=%s ticket=%s user=%s", order.id, ticket.id, user_id)
    return order


def _order_transition(*, order_id: str, from_statuses: list[str], to_status: str) -> tuple[Outcome, Order]:
    """Move the order to `to_status` if it is in `from_statuses`, bumping its version.

    The conditional UPDATE's row count decides, so two concurrent callers cannot both win.
    Must run inside a transaction.
    """
    changed = Order.objects.filter(id=order_id, status__in=from_statuses).update(
        status=to_status, version=F("version") + 1
    )
    order = Order.objects.select_related("ticket").filter(id=order_id).first()
    if order is None:
        raise OrderNotFound()
    if changed:
        return Outcome.APPLIED, order
    if order.status == to_status:
        return Outcome.UNCHANGED, order
    return Outcome.REFUSED, order


def order_cancel(*, order_id: str) -> tuple[Outcome, Order]:
    """Cancel an order that is created or awaiting payment and publish `order:cancelled` once.

    A cancelled order stays as it is (UNCHANGED); a complete one cannot be cancelled (REFUSED).
    """
    with transaction.atomic():
        outcome, order = _order_transition(
            order_id=order_id, from_statuses=ORDER_CANCELLABLE_STATUSES, to_status=OrderStatus.CANCELLED
        )
        if outcome is Outcome.APPLIED:
            outbox_enqueue(event=OrderCancelled(id=order.id, version=order.version, ticket={"id": order.ticket_id}))
    logger.info("order cancel id=%s outcome=%s status=%s", order.id, outcome.value, order.status)
    return outcome, order


def order_cancel_by_user(*, order_id: str) -> Order:
    """The API's cancel: a complete order is a 400, a cancelled one is left as it is."""
    outcome, order = order_cancel(order_id=order_id)
    if outcome is Outcome.REFUSED:
        raise CannotCancelCompletedOrder()
    return order


def order_complete(*, order_id: str) -> tuple[Outcome, Order]:
    """Mark a paid order complete. A cancelled order is REFUSED: the payment needs an operator."""
    with transaction.atomic():
        outcome, order = _order_transition(
            order_id=order_id, from_statuses=ORDER_CANCELLABLE_STATUSES, to_status=OrderStatus.COMPLETE
        )
    logger.info("order complete id=%s outcome=%s status=%s", order.id, outcome.value, order.status)
    return outcome, order
