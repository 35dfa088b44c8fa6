"""Reading orders for the API: `.values()`-shaped rows (OrderRow), one query each."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.db.models import Q

from core.ids import is_object_id
from core.transactions import SQL_VENDORS
from orders.exceptions import OrderNotFound, OrderNotOwned, UnknownCursor
from orders.models import Order
from orders.representation import ORDER_ROW_FIELDS, OrderRow


def order_row_get_for_user(*, order_id: str, user_id: str) -> OrderRow:
    """The order as a row, if it exists (OrderNotFound) and belongs to `user_id` (OrderNotOwned)."""
    row = order_row_by_id(order_id=order_id.lower()) if is_object_id(order_id) else None
    if row is None:
        raise OrderNotFound()
    if row["user_id"] != user_id:
        raise OrderNotOwned()
    return row


def order_row_by_id(*, order_id: str) -> OrderRow | None:
    if connection.vendor in SQL_VENDORS:
        return _order_row_by_id_sql(order_id=order_id)
    return Order.objects.filter(id=order_id).values(*ORDER_ROW_FIELDS).first()


def order_rows_for_user(*, user_id: str, after: str | None = None, limit: int | None = None) -> list[OrderRow]:
    """The user's orders, oldest first (created_at, then id); only those after the order `after` and
    at most `limit` of them when given. Raises UnknownCursor if `after` is not one of the user's orders.

    Keyset paging: the page starts where the index (user_id, created_at, id) says, so a page costs
    the same whatever its position and however many orders other users have.
    """
    if connection.vendor in SQL_VENDORS:
        rows = _order_rows_for_user_sql(user_id=user_id, after=after, limit=limit)
        # An empty page is the end of the list or an unknown cursor; only then is it worth asking which.
        if after is not None and not rows and not Order.objects.filter(id=after, user_id=user_id).exists():
            raise UnknownCursor()
        return rows
    return _order_rows_for_user_orm(user_id=user_id, after=after, limit=limit)


def _order_rows_for_user_orm(*, user_id: str, after: str | None, limit: int | None) -> list[OrderRow]:
    orders = Order.objects.filter(user_id=user_id)
    if after is not None:
        created_at = Order.objects.filter(id=after, user_id=user_id).values_list("created_at", flat=True).first()
        if created_at is None:
            raise UnknownCursor()
        orders = orders.filter(Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=after))
    rows = orders.order_by("created_at", "id").values(*ORDER_ROW_FIELDS)
    return list(rows[:limit] if limit is not None else rows)


# --- Below the ORM ---------------------------------------------------------------------------------
# The read paths run on every request; compiling their querysets was about 40% of a view's time.
# Each statement here has an ORM twin above (the MongoDB path), and orders/tests/test_sql_paths.py
# checks that both give the same rows. Columns are in ORDER_ROW_FIELDS order.

_SELECT_ORDER_ROWS = (
    "SELECT o.id, o.user_id, o.status, o.expires_at, o.version, o.ticket_id, t.title, t.price, t.version"
    " FROM orders_order o INNER JOIN tickets_replica_ticket t ON t.id = o.ticket_id"
)
_ORDER_BY_ID = _SELECT_ORDER_ROWS + " WHERE o.id = %s"
_ORDERS_OF_USER = _SELECT_ORDER_ROWS + " WHERE o.user_id = %s"
# Row values compare (created_at, id) in one index range on both databases; the cursor's own row is
# read inside the statement, so a page is one query. Someone else's order yields no row: no orders.
_AFTER_CURSOR = (
    " AND (o.created_at, o.id) > (SELECT c.created_at, c.id FROM orders_order c WHERE c.id = %s AND c.user_id = %s)"
)
_OLDEST_FIRST = " ORDER BY o.created_at ASC, o.id ASC"
_LIMIT = " LIMIT %s"


def _as_row(values: tuple) -> OrderRow:
    row = dict(zip(ORDER_ROW_FIELDS, values, strict=True))
    # SQLite hands back naive UTC datetimes (USE_TZ); the ORM would make them aware the same way.
    if row["expires_at"].tzinfo is None:
        row["expires_at"] = row["expires_at"].replace(tzinfo=dt.UTC)
    return row  # type: ignore[return-value]


def _order_row_by_id_sql(*, order_id: str) -> OrderRow | None:
    with connection.cursor() as cursor:
        cursor.execute(_ORDER_BY_ID, [order_id])
        values = cursor.fetchone()
    return _as_row(values) if values is not None else None


def _order_rows_for_user_sql(*, user_id: str, after: str | None, limit: int | None) -> list[OrderRow]:
    sql, params = _ORDERS_OF_USER, [user_id]
    if after is not None:
        sql, params = sql + _AFTER_CURSOR, [*params, after, user_id]
    sql += _OLDEST_FIRST
    if limit is not None:
        sql, params = sql + _LIMIT, [*params, limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [_as_row(values) for values in cursor.fetchall()]
