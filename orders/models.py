"""Orders: a user's hold on one ticket."""

from __future__ import annotations

from django.db import models

from core.ids import new_object_id
from messaging.order_status import ORDER_ACTIVE_STATUSES, OrderStatus

# An order in one of these states can still be cancelled (by its user or by expiration).
ORDER_CANCELLABLE_STATUSES = [OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT]


class Order(models.Model):
    id = models.CharField(primary_key=True, max_length=24, default=new_object_id, editable=False)
    user_id = models.CharField(max_length=255)
    status = models.CharField(max_length=32, choices=OrderStatus.choices, default=OrderStatus.CREATED)
    expires_at = models.DateTimeField()
    ticket = models.ForeignKey("tickets_replica.Ticket", on_delete=models.PROTECT, related_name="orders")
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # Written as status IN (...) rather than status != cancelled: MongoDB's partial
            # indexes cannot express a negation.
            models.UniqueConstraint(
                fields=["ticket"],
                condition=models.Q(status__in=ORDER_ACTIVE_STATUSES),
                name="one_active_order_per_ticket",
            ),
        ]
        indexes = [
            # GET /api/orders: the caller's orders, oldest first; `id` breaks ties and is the paging
            # cursor's second half, so a page is one range of this index.
            models.Index(fields=["user_id", "created_at", "id"], name="order_user_created_id_idx"),
        ]

    def __str__(self) -> str:
        return f"Order {self.id} ({self.status})"


class IdempotencyKey(models.Model):
    """An `Idempotency-Key` a user's POST /api/orders created an order under, and the answer it got.

    Written in the order's own transaction, so a key exists exactly when its order does.
    """

    id = models.CharField(primary_key=True, max_length=24, default=new_object_id, editable=False)
    user_id = models.CharField(max_length=255)
    key = models.CharField(max_length=255)
    # sha256 (hex) of the request as the service read it (orders.idempotency.request_fingerprint).
    fingerprint = models.CharField(max_length=64)
    order_id = models.CharField(max_length=24)
    # The 201's body as sent (UTF-8 JSON): a repeat answers these bytes, whatever the order became since.
    response = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Keys are the user's own: two users may pick the same one.
            models.UniqueConstraint(fields=["user_id", "key"], name="one_idempotency_key_per_user"),
        ]
        indexes = [
            # The worker's purge: the keys older than IDEMPOTENCY_KEY_TTL_SECONDS.
            models.Index(fields=["created_at"], name="idempotency_key_created_idx"),
        ]

    def __str__(self) -> str:
        return f"Idempotency-Key {self.key!r} of {self.user_id} (order {self.order_id})"
