"""Replica tickets in the admin, read-only: the tickets service owns them."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Exists, OuterRef

from core.json_numbers import json_number
from messaging.order_status import ORDER_ACTIVE_STATUSES
from tickets_replica.models import Ticket
from web.admin_site import ReadOnlyModelAdmin


@admin.register(Ticket)
class TicketAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "title", "price_shown", "version", "reserved"]
    search_fields = ["id", "title"]
    fields = ["id", "title", "price_shown", "version"]

    @admin.display(description="price", ordering="price")
    def price_shown(self, ticket: Ticket) -> int | float:
        # As the API and the events print it: 20, not 20.0.
        return json_number(ticket.price)

    def get_queryset(self, request):
        # Through the reverse side of orders.Order.ticket, as Ticket.is_reserved(): no import of the app above.
        orders = Ticket._meta.get_field("orders").related_model.objects
        active_orders = orders.filter(ticket=OuterRef("pk"), status__in=ORDER_ACTIVE_STATUSES)
        return super().get_queryset(request).annotate(has_active_order=Exists(active_orders))

    @admin.display(boolean=True, ordering="has_active_order")
    def reserved(self, ticket: Ticket) -> bool:
        return ticket.has_active_order
