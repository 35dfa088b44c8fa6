"""The admin's failed events: listed, and retried through the same listener code as the worker."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from messaging.models import FailedEvent, OutboxEvent
from messaging.order_status import OrderStatus
from orders.models import Order
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
    unknown_order = {"id": "65f0c0ffee0000000000aaaa", "orderId": "65f0c0ffee0000000000bbbb", "stripeId": "ch_1"}
    event = failed("payment:created", json.dumps(unknown_order), 4)
    garbage = failed("ticket:created", "{not json", 5)

    response = retry(admin_client, event, garbage)

    assert response.status_code == 200
    for row in (event, garbage):
        row.refresh_from_db()
        assert row.resolved_at is None
        assert row.error.startswith("retry: ")
    assert "order 65f0c0ffee0000000000bbbb does not exist" in event.error
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


# --- a failed event's own page ------------------------------------------------------------------


def change_url(event: FailedEvent) -> str:
    return reverse("admin:messaging_failedevent_change", args=[event.pk])


def test_a_failed_event_page_is_read_only_and_offers_retry(admin_client):
    event = failed("ticket:created", "{not json", 8)

    html = admin_client.get(change_url(event)).content.decode()

    assert "View failed event" in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert 'name="_retry"' in html
    assert reverse("admin:messaging_failedevent_retry", args=[event.pk]) in html


def test_the_retry_button_applies_the_event_and_returns_to_its_page(admin_client):
    payload = {"id": TICKET_ID, "version": 0, "title": "concert", "price": 20, "userId": "u1"}
    event = failed("ticket:created", json.dumps(payload), 9)

    response = admin_client.post(reverse("admin:messaging_failedevent_retry", args=[event.pk]), follow=True)

    assert response.redirect_chain == [(change_url(event), 302)]
    assert "Ticket:created #9: applied" in response.content.decode()  # message_user capitalises
    event.refresh_from_db()
    assert event.resolved_at is not None
    assert Ticket.objects.get(id=TICKET_ID).title == "concert"


def test_the_retry_url_takes_only_a_post_from_staff_who_may_change(admin_client, client, django_user_model):
    event = failed("ticket:created", "{not json", 10)
    url = reverse("admin:messaging_failedevent_retry", args=[event.pk])

    assert admin_client.get(url).status_code == 405
    viewer = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_failedevent"))
    client.force_login(viewer)
    assert client.post(url).status_code == 403
    event.refresh_from_db()
    assert event.error == "boom"


def test_the_list_shows_the_whole_error_and_says_view(admin_client):
    long_error = "payment 65f0c0ffee0000000000beef is for order 65f0c0ffee0000000000abcd, which is cancelled " * 3
    FailedEvent.objects.create(
        subject="payment:created", stream="ticketing", stream_sequence=11, payload="{}", error=long_error
    )

    html = admin_client.get(reverse("admin:messaging_failedevent_changelist")).content.decode()

    assert long_error.strip() in html
    assert "Select failed event to view" in html
