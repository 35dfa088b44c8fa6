"""Every change to an order, in one place: the API, the admin and the listeners call these."""

from __future__ import annotations

import datetime as dt
import enum
import logging

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Model
from django.utils import timezone

from core.ids import new_object_id
from core.transactions import SQL_VENDORS, atomic
from messaging.events import OrderCancelled, OrderCreated
from messaging.order_status import OrderStatus
from messaging.outbox import outbox_enqueue
from orders.exceptions import (
    CannotCancelCompletedOrder,
    IdempotencyKeyReused,
    OrderNotFound,
    TicketAlreadyReserved,
    TicketNotFound,
)
from orders.idempotency import idempotency_key_claim, idempotency_key_record, idempotency_key_stored
from orders.models import ORDER_CANCELLABLE_STATUSES, Order
from orders.representation import OrderDict, order_row, order_to_dict, render_json
from tickets_replica.models import Ticket

logger = logging.getLogger(__name__)


class Outcome(enum.Enum):
    """What a state change did: the callers (view, admin, listener) decide what it means for them."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"  # already in the wanted state: a repeat, nothing to do
    REFUSED = "refused"  # the order's state forbids the change


def order_create(*, user_id: str, ticket_id: str) -> Order:
    """Reserve `ticket_id` for `user_id` until the expiration window ends, and announce it."""
    with atomic():
        order = _order_new(user_id=user_id, ticket_id=ticket_id)
        _order_reserve(order=order)
    logger.info("order created id=%s ticket=%s user=%s", order.id, ticket_id, user_id)
    return order


def order_create_idempotent(*, user_id: str, ticket_id: str, key: str, fingerprint: str) -> tuple[bytes, bool]:
    """order_create under the user's `Idempotency-Key`: (the order's JSON, whether it is a replay).

    The first request with the key creates the order and stores the JSON it answers in the same
    transaction; a repeat with the same `fingerprint` gets those bytes back and creates nothing
    (another fingerprint: IdempotencyKeyReused).
    Only a created order pins the key: a refusal (no such ticket, ticket already reserved) rolls
    back with the transaction and leaves the key free, so a retry is judged afresh.
    """
    stored = idempotency_key_stored(user_id=user_id, key=key)
    if stored is None:
        with atomic():
            stored = idempotency_key_claim(user_id=user_id, key=key)
            if stored is None:
                order = _order_new(user_id=user_id, ticket_id=ticket_id)
                response = render_json(order_to_dict(order_row(order)))
                # The key before the order: a concurrent request with it fails here (MongoDB's write
                # conflict) rather than on the ticket's unique index, as `Ticket is already reserved`.
                idempotency_key_record(
                    user_id=user_id, key=key, fingerprint=fingerprint, order_id=order.id, response=response
                )
                _order_reserve(order=order)
        if stored is None:
            logger.info("order created id=%s ticket=%s user=%s idempotency-key=yes", order.id, ticket_id, user_id)
            return response, False
    if stored.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    return stored.response, True


def _order_new(*, user_id: str, ticket_id: str) -> Order:
    """The order a create would insert (status created, version 0), with its ticket; not saved yet."""
    ticket = ticket_get(ticket_id=ticket_id)
    if ticket is None:
        raise TicketNotFound()
    now = timezone.now()
    order = _loaded(
        Order,
        id=new_object_id(),
        user_id=user_id,
        status=OrderStatus.CREATED,
        expires_at=now + dt.timedelta(seconds=settings.EXPIRATION_WINDOW_SECONDS),
        ticket_id=ticket.id,
        version=0,
        created_at=now,
    )
    order.ticket = ticket
    return order


def _order_reserve(*, order: Order) -> None:
    """Insert a new order unless its ticket is reserved, with its `order:created`; inside a transaction."""
    if not order_insert_unless_reserved(order=order):
        raise TicketAlreadyReserved()
    outbox_enqueue(event=order_created_event(order_to_dict(order_row(order))))


def order_created_event(order: OrderDict) -> OrderCreated:
    """`order:created` from the API's shape of the order, so both say the same (e.g. `expiresAt`)."""
    return OrderCreated(
        id=order["id"],
        version=order["version"],
        status=order["status"],
        userId=order["userId"],
        expiresAt=order["expiresAt"],
        ticket={"id": order["ticket"]["id"], "price": order["ticket"]["price"]},
    )


def ticket_get(*, ticket_id: str) -> Ticket | None:
    if connection.vendor in SQL_VENDORS:
        return _ticket_get_sql(ticket_id=ticket_id)
    return Ticket.objects.filter(id=ticket_id).first()


def order_insert_unless_reserved(*, order: Order) -> bool:
    """Insert `order` (status created) unless its ticket is reserved; False if it is.

    The partial unique constraint `one_active_order_per_ticket` is the judge, so a race between two
    requests for one ticket has one winner. Must run inside a transaction.
    """
    if connection.vendor in SQL_VENDORS:
        return _order_insert_unless_reserved_sql(order=order)
    # A fast refusal for the common case; the unique constraint settles the races.
    if order.ticket.is_reserved():
        return False
    try:
        with transaction.atomic():
            order.save(force_insert=True)
    except IntegrityError:
        return False
    return True


def _loaded(model: type[Model], **values):
    """An instance built from values we already hold, marked as saved (as the ORM builds query results)."""
    names = [field.attname for field in model._meta.concrete_fields]
    return model.from_db(connection.alias, names, [values[name] for name in names])


# --- Below the ORM ---------------------------------------------------------------------------------
# POST /api/orders was BEGIN, SELECT ticket, SELECT EXISTS(active order), SAVEPOINT, INSERT, RELEASE,
# INSERT outbox, COMMIT; these make it BEGIN, SELECT, INSERT ... ON CONFLICT DO NOTHING, INSERT, COMMIT,
# without compiling querysets. orders/tests/test_sql_paths.py checks each against its ORM twin.

_SELECT_TICKET = "SELECT t.title, t.price, t.version FROM tickets_replica_ticket t WHERE t.id = %s"
# The conflict target names the partial unique index `one_active_order_per_ticket` (same predicate):
# a reserved ticket makes the INSERT a no-op (row count 0) instead of an IntegrityError, which would
# need a savepoint to keep the transaction usable. PostgreSQL, and SQLite >= 3.24.
_INSERT_ORDER_UNLESS_RESERVED = (
    "INSERT INTO orders_order (id, user_id, status, expires_at, ticket_id, version, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (ticket_id) WHERE status IN ('created', 'awaiting:payment', 'complete') DO NOTHING"
)


def _ticket_get_sql(*, ticket_id: str) -> Ticket | None:
    with connection.cursor() as cursor:
        cursor.execute(_SELECT_TICKET, [ticket_id])
        values = cursor.fetchone()
    if values is None:
        return None
    title, price, version = values
    return _loaded(Ticket, id=ticket_id, title=title, price=price, version=version)


def _order_insert_unless_reserved_sql(*, order: Order) -> bool:
    adapt = connection.ops.adapt_datetimefield_value
    params = [
        order.id,
        order.user_id,
        order.status,
        adapt(order.expires_at),
        order.ticket_id,
        order.version,
        adapt(order.created_at),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_ORDER_UNLESS_RESERVED, params)
        return cursor.rowcount == 1


def _order_transition(*, order_id: str, from_statuses: list[str], to_status: str) -> tuple[Outcome, Order]:
    """Move the order to `to_status` if it is in `from_statuses`, bumping its version.

    The conditional UPDATE's row count decides, so two concurrent callers cannot both win.
    Must run inside a transaction.
    """
    changed = Order.objects.filter(id=order_id, status__in=from_statuses).update(
        status=to_status, version=F("version") + 1
    )
    try:
        # get() drops the default ordering that first() would compile; no caller needs the ticket.
        order = Order.objects.get(id=order_id)
    except Order.DoesNotExist:
        raise OrderNotFound() from None
    if changed:
        return Outcome.APPLIED, order
    if order.status == to_status:
        return Outcome.UNCHANGED, order
    return Outcome.REFUSED, order


def order_cancel(*, order_id: str) -> tuple[Outcome, Order]:
    """Cancel an order that is created or awaiting payment and publish `order:cancelled` once.

    A cancelled order stays as it is (UNCHANGED); a complete one cannot be cancelled (REFUSED).
    """
    with atomic():
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
    with atomic():
        outcome, order = _order_transition(
            order_id=order_id, from_statuses=ORDER_CANCELLABLE_STATUSES, to_status=OrderStatus.COMPLETE
        )
    logger.info("order complete id=%s outcome=%s status=%s", order.id, outcome.value, order.status)
    return outcome, order
