"""Reading orders for the API: rows shaped as OrderRow, one query each."""

from __future__ import annotations

from django.db import connection
from django.db.models import Q

from core.ids import is_object_id
from core.transactions import SQL_VENDORS
from orders.exceptions import OrderNotFound, OrderNotOwned, UnknownCursor
from orders.models import Order
from orders.representation import ORDER_ROW_FIELDS, OrderRow, to_iso_z


def order_row_get_for_user(*, order_id: str, user_id: str) -> OrderRow:
    """The order as a row, if it exists (OrderNotFound) and belongs to `user_id` (OrderNotOwned)."""
    row = order_row_by_id(order_id=order_id.lower()) if is_object_id(order_id) else None
    if row is None:
        raise OrderNotFound()
    if row.user_id != user_id:
        raise OrderNotOwned()
    return row


def order_row_by_id(*, order_id: str) -> OrderRow | None:
    if connection.vendor in SQL_VENDORS:
        return _order_row_by_id_sql(order_id=order_id)
    return _order_row_by_id_orm(order_id=order_id)


def _order_row_by_id_orm(*, order_id: str) -> OrderRow | None:
    row = Order.objects.filter(id=order_id).values_list(*ORDER_ROW_FIELDS).first()
    return _with_expiry_as_text(row) if row is not None else None


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
    rows = orders.order_by("created_at", "id").values_list(*ORDER_ROW_FIELDS)
    return [_with_expiry_as_text(row) for row in (rows[:limit] if limit is not None else rows)]


def _with_expiry_as_text(values: tuple) -> OrderRow:
    """A values_list() row, its expires_at datetime as the text the SQL statements below give."""
    row = OrderRow._make(values)
    return row._replace(expires_at=to_iso_z(row.expires_at))  # type: ignore[arg-type]


# --- Below the ORM ---------------------------------------------------------------------------------
# The read paths run on every request; compiling their querysets was about 40% of a view's time.
# Each statement here has an ORM twin above (the MongoDB path), and orders/tests/test_sql_paths.py
# checks that both give the same rows. Columns are in ORDER_ROW_FIELDS order.

# expires_at as to_iso_z() writes it (UTC, milliseconds cut, not rounded, `Z`), by the database: building and
# formatting a datetime object was 15% of a 20-order list's instructions. SQLite holds Django's text
# "YYYY-MM-DD HH:MM:SS[.ffffff]" (naive UTC; no fraction at a whole second).
_EXPIRES_AT_TEXT = {
    "sqlite": "replace(substr(o.expires_at || '.000000', 1, 23), ' ', 'T') || 'Z'",
    "postgresql": """to_char(o.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')""",
}
_SELECT_ORDER_ROWS = {
    vendor: f"SELECT o.id, o.user_id, o.status, {expires_at}, o.version, o.ticket_id, t.title, t.price, t.version"  # noqa: S608 (constant text)
    " FROM orders_order o INNER JOIN tickets_replica_ticket t ON t.id = o.ticket_id"
    for vendor, expires_at in _EXPIRES_AT_TEXT.items()
}
_ORDER_BY_ID = {vendor: select + " WHERE o.id = %s" for vendor, select in _SELECT_ORDER_ROWS.items()}
_ORDERS_OF_USER = {vendor: select + " WHERE o.user_id = %s" for vendor, select in _SELECT_ORDER_ROWS.items()}
# Row values compare (created_at, id) in one index range on both databases; the cursor's own row is
# read inside the statement, so a page is one query. Someone else's order yields no row: no orders.
_AFTER_CURSOR = (
    " AND (o.created_at, o.id) > (SELECT c.created_at, c.id FROM orders_order c WHERE c.id = %s AND c.user_id = %s)"
)
_OLDEST_FIRST = " ORDER BY o.created_at ASC, o.id ASC"
_LIMIT = " LIMIT %s"


def _order_row_by_id_sql(*, order_id: str) -> OrderRow | None:
    with connection.cursor() as cursor:
        cursor.execute(_ORDER_BY_ID[connection.vendor], [order_id])
        values = cursor.fetchone()
    return OrderRow._make(values) if values is not None else None


def _order_rows_for_user_sql(*, user_id: str, after: str | None, limit: int | None) -> list[OrderRow]:
    sql, params = _ORDERS_OF_USER[connection.vendor], [user_id]
    if after is not None:
        sql, params = sql + _AFTER_CURSOR, [*params, after, user_id]
    sql += _OLDEST_FIRST
    if limit is not None:
        sql, params = sql + _LIMIT, [*params, limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(map(OrderRow._make, cursor.fetchall()))
