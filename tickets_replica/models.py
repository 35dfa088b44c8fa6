"""The local copy of the tickets service's tickets, kept current by its events."""

from __future__ import annotations

from django.db import models

from messaging.order_status import ORDER_ACTIVE_STATUSES


class Ticket(models.Model):
    # The tickets service's own id: the replica never makes ids up.
    id = models.CharField(primary_key=True, max_length=24)
    title = models.CharField(max_length=255)
    # The tickets service keeps price as a JavaScript number; a float holds exactly that.
    price = models.FloatField()
    version = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.id})"

    def is_reserved(self) -> bool:
        """True while an order for this ticket is created, awaiting payment or complete."""
        # `orders` is the reverse side of orders.Order.ticket: no import of the app above this one.
        return self.orders.filter(status__in=ORDER_ACTIVE_STATUSES).exists()
