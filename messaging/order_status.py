"""The order statuses every service of the platform shares (the Node services' common OrderStatus)."""

from __future__ import annotations

from django.db import models


class OrderStatus(models.TextChoices):
    CREATED = "created", "Created"
    CANCELLED = "cancelled", "Cancelled"
    AWAITING_PAYMENT = "awaiting:payment", "Awaiting payment"
    COMPLETE = "complete", "Complete"


# A ticket is reserved while one of its orders is in one of these states.
ORDER_ACTIVE_STATUSES = [OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT, OrderStatus.COMPLETE]
