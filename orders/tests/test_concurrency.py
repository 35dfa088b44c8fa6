"""Reservations under real concurrency: a live server, real threads, the database settles every race."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from messaging.models import OutboxEvent
from messaging.order_status import ORDER_ACTIVE_STATUSES
from orders.models import Order

ALREADY_RESERVED = {"errors": [{"message": "Ticket is already reserved"}]}


@pytest.fixture(autouse=True)
def _needs_a_shared_database():
    if connection.vendor == "sqlite" and connection.settings_dict["TEST"].get("NAME") in (None, "", ":memory:"):
        pytest.skip("the live server's threads need a database file (or PostgreSQL) to have their own connections")


def fire_together(requests_to_send: list[dict]) -> list[tuple[int, object]]:
    """Send every request at once (a barrier releases them together); return (status, body) in order."""
    barrier = threading.Barrier(len(requests_to_send))

    def send(request: dict) -> tuple[int, object]:
        with requests.Session() as session:
            # Connect first (an anonymous 401 touches no table), so the barrier releases requests
            # rather than TCP handshakes.
            session.get(request["url"].split("/api/")[0] + "/api/orders", timeout=30)
            barrier.wait(timeout=60)
            response = session.request(timeout=60, **request)
        body = response.json() if response.content else None
        return response.status_code, body

    with ThreadPoolExecutor(len(requests_to_send)) as pool:
        return list(pool.map(send, requests_to_send))


def assert_no_server_errors(results: list[tuple[int, object]]) -> None:
    failures = [(status, body) for status, body in results if status >= 500]
    assert failures == [], f"server errors: {failures}"


def test_fifty_users_racing_for_one_ticket_reserve_it_exactly_once(live_server, make_user, make_ticket):
    ticket = make_ticket()
    users = [make_user() for _ in range(50)]

    results = fire_together(
        [
            {
                "method": "POST",
                "url": f"{live_server.url}/api/orders",
                "json": {"ticketId": ticket.id},
                "headers": {"Cookie": cookie},
            }
            for _, cookie in users
        ]
    )

    assert_no_server_errors(results)
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [400] * 49, results
    assert all(body == ALREADY_RESERVED for status, body in results if status == 400), results
    [winner] = [body for status, body in results if status == 201]
    assert winner["ticket"]["id"] == ticket.id
    assert winner["userId"] in {user_id for user_id, _ in users}
    assert list(Order.objects.filter(ticket=ticket).values_list("id", "status")) == [(winner["id"], "created")]
    assert Order.objects.filter(ticket=ticket, status__in=ORDER_ACTIVE_STATUSES).count() == 1
    assert [row.payload["id"] for row in OutboxEvent.objects.filter(subject="order:created")] == [winner["id"]]
    assert OutboxEvent.objects.count() == 1


def test_one_user_reserving_many_tickets_at_once_gets_them_all(live_server, make_user, make_ticket):
    user_id, cookie = make_user()
    tickets = [make_ticket(price=n) for n in range(30)]

    results = fire_together(
        [
            {
                "method": "POST",
                "url": f"{live_server.url}/api/orders/",
                "json": {"ticketId": t.id},
                "headers": {"Cookie": cookie},
            }
            for t in tickets
        ]
    )

    assert_no_server_errors(results)
    assert [status for status, _ in results] == [201] * len(tickets), results
    assert [body["ticket"]["id"] for _, body in results] == [t.id for t in tickets]
    assert Order.objects.filter(user_id=user_id, status="created").count() == len(tickets)
    assert sorted(row.payload["ticket"]["id"] for row in OutboxEvent.objects.filter(subject="order:created")) == sorted(
        t.id for t in tickets
    )
    listed = requests.get(f"{live_server.url}/api/orders", headers={"Cookie": cookie}, timeout=30)
    assert sorted(o["id"] for o in listed.json()) == sorted(body["id"] for _, body in results)


def test_many_users_racing_for_many_tickets_each_ticket_goes_once(live_server, make_user, make_ticket):
    tickets = [make_ticket() for _ in range(5)]
    users = [make_user() for _ in range(40)]

    results = fire_together(
        [
            {
                "method": "POST",
                "url": f"{live_server.url}/api/orders",
                "json": {"ticketId": tickets[n % len(tickets)].id},
                "headers": {"Cookie": cookie},
            }
            for n, (_, cookie) in enumerate(users)
        ]
    )

    assert_no_server_errors(results)
    assert sorted(status for status, _ in results) == [201] * 5 + [400] * 35, results
    assert sorted(body["ticket"]["id"] for status, body in results if status == 201) == sorted(t.id for t in tickets)
    assert Order.objects.count() == 5
    assert OutboxEvent.objects.filter(subject="order:created").count() == 5


def test_concurrent_cancels_of_one_order_publish_order_cancelled_once(live_server, make_user, make_ticket):
    _, cookie = make_user()
    created = requests.post(
        f"{live_server.url}/api/orders", json={"ticketId": make_ticket().id}, headers={"Cookie": cookie}, timeout=30
    )
    assert created.status_code == 201, created.content
    order_id = created.json()["id"]

    results = fire_together(
        [{"method": "DELETE", "url": f"{live_server.url}/api/orders/{order_id}", "headers": {"Cookie": cookie}}] * 20
    )

    assert_no_server_errors(results)
    assert results == [(204, None)] * 20
    assert Order.objects.filter(id=order_id).values_list("status", "version").get() == ("cancelled", 1)
    assert [row.payload for row in OutboxEvent.objects.filter(subject="order:cancelled")] == [
        {"id": order_id, "version": 1, "ticket": {"id": created.json()["ticket"]["id"]}}
    ]


def test_a_ticket_released_by_a_cancel_goes_to_exactly_one_of_the_racers(live_server, make_user, make_ticket):
    ticket = make_ticket()
    _, owner_cookie = make_user()
    first = requests.post(
        f"{live_server.url}/api/orders", json={"ticketId": ticket.id}, headers={"Cookie": owner_cookie}, timeout=30
    ).json()
    racers = [make_user() for _ in range(20)]

    results = fire_together(
        [
            {
                "method": "DELETE",
                "url": f"{live_server.url}/api/orders/{first['id']}",
                "headers": {"Cookie": owner_cookie},
            }
        ]
        + [
            {
                "method": "POST",
                "url": f"{live_server.url}/api/orders",
                "json": {"ticketId": ticket.id},
                "headers": {"Cookie": cookie},
            }
            for _, cookie in racers
        ]
    )

    assert_no_server_errors(results)
    assert results[0] == (204, None)
    posts = results[1:]
    assert all(status in (201, 400) for status, _ in posts), posts
    assert all(body == ALREADY_RESERVED for status, body in posts if status == 400), posts
    # Some racer may arrive before the cancel commits; at most one wins, and the ticket is held at most once.
    assert sum(status == 201 for status, _ in posts) <= 1
    assert Order.objects.filter(ticket=ticket, status__in=ORDER_ACTIVE_STATUSES).count() == sum(
        status == 201 for status, _ in posts
    )
