"""The admin's failed events: listed, and retried through the same listener code as the worker."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from messaging.models import FailedEvent, OutboxEvent
from orders.models import Order, OrderStatus
from tickets_replica.models import Ticket

pytestmark = pytest.mark.django_db

TICKET_ID = "65f0c0ffee0000000000abcd"


def failed(subject: str, payload: str, sequence: int) -> FailedEvent:
    return FailedEvent.objects.create(
        subject=subject, stream="ticketing", stream_sequence=sequence, payload=payload, error="boom", delivery_count=10
    )


def retry(admin_client, *events: FailedEvent):
    url = reverse("admin:messaging_failedevent_changelist")
    return admin_client.post(url, {"action": "retry", "_selected_action": [e.pk for e in events]}, follow=True)


def test_changelist_shows_failed_events(admin_client):
    failed("ticket:created", "{not json", 7)
    response = admin_client.get(reverse("admin:messaging_failedevent_changelist"))
    assert response.status_code == 200
    assert b"ticket:created" in response.content
    assert b"boom" in response.content


def test_retry_applies_the_event_and_resolves_it(admin_client):
    payload = {"id": TICKET_ID, "version": 0, "title": "concert", "price": 20, "userId": "u1"}
    event = failed("ticket:created", json.dumps(payload), 3)

    response = retry(admin_client, event)

    assert response.status_code == 200
    assert Ticket.objects.get(id=TICKET_ID).title == "concert"
    event.refresh_from_db()
    assert event.resolved_at is not None


def test_retry_that_still_fails_keeps_the_event_and_says_why(admin_client):
    gap = {"id": TICKET_ID, "version": 5, "title": "concert", "price": 20, "userId": "u1"}
    event = failed("ticket:updated", json.dumps(gap), 4)
    garbage = failed("ticket:created", "{not json", 5)

    response = retry(admin_client, event, garbage)

    assert response.status_code == 200
    for row in (event, garbage):
        row.refresh_from_db()
        assert row.resolved_at is None
        assert row.error.startswith("retry: ")
    assert "not at version 4" in event.error
    assert "not valid UTF-8 JSON" in garbage.error
    assert not Ticket.objects.exists()


def test_retried_expiration_cancels_through_the_order_service(admin_client, make_ticket):
    ticket = make_ticket()
    order = Order.objects.create(user_id="u1", ticket=ticket, expires_at="2026-01-01T00:00:00Z")
    event = failed("expiration:complete", json.dumps({"orderId": order.id}), 6)

    retry(admin_client, event)

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert order.version == 1
    cancelled = OutboxEvent.objects.get(subject="order:cancelled")
    assert cancelled.payload == {"id": order.id, "version": 1, "ticket": {"id": ticket.id}}
