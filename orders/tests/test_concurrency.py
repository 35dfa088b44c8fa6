"""Reservations under real concurrency: a live server, real threads, the database settles every race."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from messaging.models import OutboxEvent
from messaging.order_status import ORDER_ACTIVE_STATUSES
from orders.models import IdempotencyKey, Order
from testsupport.waiting import wait_until

ALREADY_RESERVED = {"errors": [{"message": "Ticket is already reserved"}]}
KEY_IN_PROGRESS = {"errors": [{"message": "A request with this Idempotency-Key is still in progress"}]}


@pytest.fixture(autouse=True)
def _needs_a_shared_database():
    if connection.vendor == "sqlite" and connection.settings_dict["TEST"].get("NAME") in (None, "", ":memory:"):
        pytest.skip("the live server's threads need a database file (or PostgreSQL) to have their own connections")


def fire_together_responses(requests_to_send: list[dict]) -> list[requests.Response]:
    """Send every request at once (a barrier releases them together); return the responses in order."""
    barrier = threading.Barrier(len(requests_to_send))

    def send(request: dict) -> requests.Response:
        with requests.Session() as session:
            # Connect first (an anonymous 401 touches no table), so the barrier releases requests
            # rather than TCP handshakes.
            session.get(request["url"].split("/api/")[0] + "/api/orders", timeout=30)
            barrier.wait(timeout=60)
            return session.request(timeout=60, **request)

    with ThreadPoolExecutor(len(requests_to_send)) as pool:
        return list(pool.map(send, requests_to_send))


def fire_together(requests_to_send: list[dict]) -> list[tuple[int, object]]:
    """fire_together_responses(), as (status, parsed body) pairs."""
    return [
        (response.status_code, response.json() if response.content else None)
        for response in fire_together_responses(requests_to_send)
    ]


def create_request(live_server, ticket_id: str, cookie: str, *, path: str = "/api/orders", **headers: str) -> dict:
    """A POST /api/orders for `fire_together`."""
    return {
        "method": "POST",
        "url": f"{live_server.url}{path}",
        "json": {"ticketId": ticket_id},
        "headers": {"Cookie": cookie, **headers},
    }


def assert_no_server_errors(results: list[tuple[int, object]]) -> None:
    failures = [(status, body) for status, body in results if status >= 500]
    assert failures == [], f"server errors: {failures}"


def test_fifty_users_racing_for_one_ticket_reserve_it_exactly_once(live_server, make_user, make_ticket):
    ticket = make_ticket()
    users = [make_user() for _ in range(50)]

    results = fire_together([create_request(live_server, ticket.id, cookie) for _, cookie in users])

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

    results = fire_together([create_request(live_server, t.id, cookie, path="/api/orders/") for t in tickets])

    assert_no_server_errors(results)
    assert [status for status, _ in results] == [201] * len(tickets), results
    assert [body["ticket"]["id"] for _, body in results] == [t.id for t in tickets]
    assert Order.objects.filter(user_id=user_id, status="created").count() == len(tickets)
    assert sorted(row.payload["ticket"]["id"] for row in OutboxEvent.objects.filter(subject="order:created")) == sorted(
        t.id for t in tickets
    )
    listed = requests.get(f"{live_server.url}/api/orders", headers={"Cookie": cookie}, timeout=30)
    assert sorted(o["id"] for o in listed.json()) == sorted(body["id"] for _, body in results)


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
        + [create_request(live_server, ticket.id, cookie) for _, cookie in racers]
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


@pytest.mark.nats
def test_fifty_posts_with_one_key_and_body_make_one_order_and_one_order_created_on_the_stream(
    live_server, make_user, make_ticket, run_worker, jetstream
):
    """PostgreSQL answers 409 to the requests that come while the first is in flight; SQLite queues
    them behind it (IMMEDIATE transactions), so they get the replay. Either way: one order."""
    run_worker(listeners=[])  # the outbox relay only
    ticket = make_ticket()
    _, cookie = make_user()
    request = create_request(live_server, ticket.id, cookie, **{"Idempotency-Key": "checkout-7f3a"})

    responses = fire_together_responses([request] * 50)

    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {201, 409}, [(r.status_code, r.content) for r in responses]
    [original] = [r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers]
    for response in responses:
        if response.status_code == 409:
            assert (response.json(), response.headers["Retry-After"]) == (KEY_IN_PROGRESS, "1")
        elif response is not original:
            assert (response.content, response.headers["Idempotent-Replayed"]) == (original.content, "true")
    # Each 409 retried once the first has finished: the first's answer.
    for _ in range(statuses.count(409)):
        with requests.Session() as session:
            retried = session.request(timeout=60, **request)
        assert (retried.status_code, retried.content, retried.headers["Idempotent-Replayed"]) == (
            201,
            original.content,
            "true",
        )
    # Repeats once the first has finished read its answer without taking the key: all replays, no 409.
    repeats = fire_together_responses([request] * 20)
    assert {(r.status_code, r.content, r.headers.get("Idempotent-Replayed")) for r in repeats} == {
        (201, original.content, "true")
    }
    order_id = original.json()["id"]
    assert list(Order.objects.values_list("id", flat=True)) == [order_id]
    assert list(IdempotencyKey.objects.values_list("order_id", flat=True)) == [order_id]
    assert [row.payload["id"] for row in OutboxEvent.objects.filter(subject="order:created")] == [order_id]
    wait_until(lambda: not OutboxEvent.objects.filter(sent_at__isnull=True).exists(), message="the relay to publish")
    assert [payload["id"] for payload in jetstream.payloads("order:created")] == [order_id]
