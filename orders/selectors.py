"""Reading orders for the API."""

from __future__ import annotations

from django.db.models import QuerySet

from common.exceptions import NotAuthorized
from common.ids import is_object_id
from orders.models import Order
from orders.services import OrderNotFound


def order_list(*, user_id: str) -> QuerySet[Order]:
    return Order.objects.filter(user_id=user_id).select_related("ticket").order_by("created_at", "id")


def order_get_for_user(*, order_id: str, user_id: str) -> Order:
    """The order, if it exists (404) and belongs to `user_id` (401, as the Node service answered)."""
    order = (
        Order.objects.select_related("ticket").filter(id=order_id.lower()).first() if is_object_id(order_id) else None
    )
    if order is None:
        raise OrderNotFound()
    if order.user_id != user_id:
        raise NotAuthorized()
    return order
