"""The worker as an operator sees it: /metrics and /healthz on its port, and the expiration safety net."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import urllib.error
import urllib.request

import pytest
from django.utils import timezone

from core.ids import new_object_id
from messaging.models import FailedEvent
from messaging.order_status import OrderStatus
from orders.models import Order
from orders.services import order_create
from testsupport.http import metric
from testsupport.testrun import ticket_payload
from testsupport.waiting import wait_until
from tickets_replica.models import Ticket

pytestmark = [pytest.mark.nats, pytest.mark.django_db(transaction=True)]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_count_events_orders_and_the_relay(worker_process, jetstream, make_ticket):
    port = worker_process().metrics_port
    ticket_id = new_object_id()
    jetstream.publish("ticket:created", ticket_payload(ticket_id))
    jetstream.publish("ticket:created", ticket_payload(ticket_id))  # a repeat: ignored
    jetstream.publish("ticket:created", b"{not json")  # set aside
    wait_until(lambda: FailedEvent.objects.exists() and Ticket.objects.filter(id=ticket_id).exists())
    order_create(user_id="u1", ticket_id=ticket_id)

    def scraped():
        text = get(port, "/metrics")[1]
        wanted = (
            metric(text, "orders_worker_events_total", subject="ticket:created", outcome="applied") == 1
            and metric(text, "orders_worker_events_total", subject="ticket:created", outcome="ignored") == 1
            and metric(text, "orders_worker_events_total", subject="ticket:created", outcome="rejected") == 1
            and metric(text, "orders_worker_orders_total", change="created") == 1
            and metric(text, "orders_worker_failed_events_open") == 1
        )
        return text if wanted else None

    text = wait_until(scraped, timeout=20, message="the worker's counters")
    assert metric(text, "orders_worker_relay_publish_seconds_count") == 1
    assert metric(text, "orders_worker_outbox_backlog") == 0
    assert metric(text, "orders_worker_nats_connected") in (0, 1)  # set on /healthz reads
    assert 'orders_worker_consumer_pending{subject="ticket:created"}' in text
    assert 'orders_worker_consumer_ack_pending{subject="payment:created"}' in text


@pytest.mark.own_nats_server
def test_healthz_follows_nats_and_the_port_closes_on_sigterm(worker_process, nats_server, jetstream):
    worker = worker_process(WORKER_NATS_DOWN_SECONDS="2")
    port = worker.metrics_port
    status, body = get(port, "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok", "problems": {}})

    nats_server.stop()
    # Reconnecting briefly is fine; past WORKER_NATS_DOWN_SECONDS it is not.
    unhealthy = wait_until(lambda: (r := get(port, "/healthz"))[0] == 503 and r, timeout=15, message="503")
    assert re.fullmatch(r"reconnecting for \d+s", json.loads(unhealthy[1])["problems"]["nats"])

    nats_server.start()
    wait_until(lambda: get(port, "/healthz")[0] == 200, timeout=20, message="healthy again")
    # And it consumes again: its listeners reconnected with it.
    ticket_id = new_object_id()
    jetstream.publish("ticket:created", ticket_payload(ticket_id))
    wait_until(lambda: Ticket.objects.filter(id=ticket_id).exists(), timeout=15, message="a ticket after the restart")

    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_the_worker_expires_orders_whose_expiration_never_came(worker_process, jetstream, make_ticket):
    overdue = Order.objects.create(
        user_id="u1", ticket=make_ticket(), expires_at=timezone.now() - dt.timedelta(minutes=10)
    )
    on_time = Order.objects.create(
        user_id="u1", ticket=make_ticket(), expires_at=timezone.now() - dt.timedelta(seconds=5)
    )
    port = worker_process(EXPIRATION_GRACE_SECONDS="60", EXPIRATION_SWEEP_SECONDS="0.5").metrics_port

    wait_until(lambda: Order.objects.get(id=overdue.id).status == OrderStatus.CANCELLED, timeout=20)
    wait_until(lambda: len(jetstream.payloads("order:cancelled")) == 1, timeout=20)

    assert jetstream.payloads("order:cancelled") == [
        {"id": overdue.id, "version": 1, "ticket": {"id": overdue.ticket_id}}
    ]
    assert Order.objects.get(id=on_time.id).status == OrderStatus.CREATED
    assert metric(get(port, "/metrics")[1], "orders_worker_orders_total", change="expired") == 1


def test_a_dependency_down_is_degraded_at_once_and_unhealthy_past_its_threshold():
    from messaging.observability import WorkerHealth

    now = [1000.0]
    health = WorkerHealth(stall_seconds=60, nats_down_seconds=120, database_down_seconds=30, clock=lambda: now[0])
    health.expect(["relay"])
    health.failing("database", OSError("timed out"))
    now[0] += 10
    health.beat("relay")
    healthy, problems = health.check()
    assert healthy is True
    assert problems == {"database": "OSError: timed out (failing for 10s)", "nats": "not connected after 0s"}
    now[0] += 25
    health.beat("relay")
    assert health.check()[0] is False  # 35 s > 30 s
    health.working("database")
    assert "database" not in health.check()[1]
