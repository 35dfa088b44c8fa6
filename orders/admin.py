"""Orders in the Django admin: inspect, filter, search, and cancel through the API's service."""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from orders.models import Order
from orders.services import Outcome, order_cancel
from web.admin_site import ViewOnlyPagesMixin


@admin.register(Order)
class OrderAdmin(ViewOnlyPagesMixin, admin.ModelAdmin):
    list_display = ["id", "user_id", "status", "ticket_title", "expires_at", "created_at", "version"]
    list_filter = ["status", "created_at", "expires_at"]
    search_fields = ["id", "user_id", "ticket__id", "ticket__title"]
    date_hierarchy = "created_at"
    list_select_related = ["ticket"]
    readonly_fields = ["id", "user_id", "status", "expires_at", "ticket", "version", "created_at"]
    actions = ["cancel_orders"]

    @admin.display(description="ticket", ordering="ticket__title")
    def ticket_title(self, order: Order):
        # The title, linked to the replica ticket's page; its id shows on hover.
        url = reverse("admin:tickets_replica_ticket_change", args=[order.ticket_id])
        return format_html('<a href="{}" title="ticket {}">{}</a>', url, order.ticket_id, order.ticket.title)

    def has_add_permission(self, request) -> bool:
        return False  # orders are made by users through the API

    def has_change_permission(self, request, obj=None) -> bool:
        # An order changes only through the services (the cancel action below), never by editing
        # its fields: a saved form would skip the version bump and the event. Without an object
        # this answers "may use the change actions".
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # cancel instead: deleting would skip order:cancelled

    @admin.action(description="Cancel selected orders (publishes order:cancelled)", permissions=["change"])
    def cancel_orders(self, request, queryset) -> None:
        counts = {outcome: 0 for outcome in Outcome}
        for order_id in queryset.values_list("id", flat=True):
            outcome, _ = order_cancel(order_id=order_id)
            counts[outcome] += 1
        self.message_user(request, f"Cancelled {counts[Outcome.APPLIED]} order(s).", messages.SUCCESS)
        if counts[Outcome.UNCHANGED]:
            self.message_user(request, f"{counts[Outcome.UNCHANGED]} already cancelled.", messages.INFO)
        if counts[Outcome.REFUSED]:
            self.message_user(request, f"{counts[Outcome.REFUSED]} complete order(s) not cancelled.", messages.WARNING)
