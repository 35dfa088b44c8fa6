"""The database dies (immediate shutdown) under traffic and comes back: 503s meanwhile, nothing lost after."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque

import pytest
import requests

from core.ids import new_object_id
from messaging.events import Subject
from messaging.jetstream import durable_name
from testsupport.testrun import ticket_payload
from testsupport.waiting import wait_until
from web.management.commands.mint_token import session_cookie_value

from .support import (
    SERVICE_UNAVAILABLE,
    Bus,
    migrate,
    own_servers_only,
    post_order,
    query,
    record,
    service_env,
    start_api,
    start_worker,
)

pytestmark = [pytest.mark.reliability, pytest.mark.nats, own_servers_only, pytest.mark.timeout(600)]

CREATORS = 4
TICKETS = 1500
UPDATED_DURING_OUTAGE = 200


def count(database_url: str, sql: str) -> int:
    return query(database_url, sql)[0][0]


class Traffic:
    """Creators posting orders for free tickets, and a /readyz poller, each logging (start, end, status, body)."""

    def __init__(self, api: str, tickets: list[str]) -> None:
        self.api = api
        self.free = deque(tickets)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.creates: list[tuple[float, float, int, object]] = []
        self.probes: list[tuple[float, float, int, object]] = []
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self.create_loop, args=(n,)) for n in range(CREATORS)]
        self.threads.append(threading.Thread(target=self.probe_loop))

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)

    def created(self) -> int:
        return sum(1 for _, _, status, _ in self.creates if status == 201)

    def create_loop(self, n: int) -> None:
        uid = new_object_id()
        cookie = f"session={session_cookie_value(user_id=uid, email=f'{uid}@test.com')}"
        try:
            while not self.stop.is_set():
                with self.lock:
                    if not self.free:
                        return
                    ticket = self.free.popleft()
                started = time.monotonic()
                status, body = post_order(self.api, ticket, cookie)
                with self.lock:
                    self.creates.append((started, time.monotonic(), status, body))
                    if status != 201:
                        self.free.append(ticket)  # not reserved: another try may take it
                time.sleep(0.02)
        except BaseException as exc:
            self.errors.append(exc)

    def probe_loop(self) -> None:
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                response = requests.get(f"{self.api}/readyz", timeout=30, headers={"Connection": "close"})
                self.probes.append((started, time.monotonic(), response.status_code, response.text))
                time.sleep(0.1)
        except BaseException as exc:
            self.errors.append(exc)


def test_a_database_outage_is_503_meanwhile_and_loses_nothing(processes, postgres_server, nats_server, scale):
    started = time.monotonic()
    db_url = postgres_server.create_database("orders")
    env = service_env(database_url=db_url, nats_url=nats_server.url, data_dir=processes.workdir)
    migrate(env)
    api = start_api(processes, "api", env)
    worker = start_worker(processes, "worker", env)
    bus = Bus(nats_server.url)
    processes.cleanups.append(bus.close)

    tickets = [new_object_id() for _ in range(TICKETS)]
    bus.publish_all([("ticket:created", ticket_payload(t, 0, title="v0"), new_object_id()) for t in tickets])
    wait_until(
        lambda: count(db_url, "SELECT count(*) FROM tickets_replica_ticket") == TICKETS,
        timeout=120,
        message="the tickets in the replica",
    )
    updated = tickets[:UPDATED_DURING_OUTAGE]

    with Traffic(api, tickets) as traffic:
        wait_until(lambda: traffic.created() >= 50, timeout=60, message="traffic before the outage")
        stopped_at = time.monotonic()
        postgres_server.stop("immediate")
        down_at = time.monotonic()
        # Ticket events keep coming while the database is down: the worker must hold them, not drop them.
        published = bus.publish_all(
            [("ticket:updated", ticket_payload(t, 1, title="v1", price=1), new_object_id()) for t in updated]
        )
        time.sleep(max(0.0, scale.db_outage_seconds - (time.monotonic() - down_at)))
        alive_during_outage = worker.alive()
        up_from = time.monotonic()
        postgres_server.start()
        restarted_at = time.monotonic()
        created_before_restart = traffic.created()
        wait_until(
            lambda: traffic.created() >= created_before_restart + 50, timeout=60, message="creates after the restart"
        )
    assert traffic.errors == []
    outage_seconds = restarted_at - stopped_at

    # Requests sent after the stop completed and answered before the restart began saw only the outage;
    # one sent during the outage and answered after the restart may have been served (201).
    sent_during = [c for c in traffic.creates if down_at <= c[0] < up_from]
    during = [c for c in sent_during if c[1] <= up_from]
    probes_during = [p for p in traffic.probes if p[0] >= down_at and p[1] <= up_from]
    statuses = Counter(status for _, _, status, _ in traffic.creates)
    during_statuses = Counter(status for _, _, status, _ in during)
    created_ids = [body["id"] for _, _, status, body in traffic.creates if status == 201]

    # Nothing lost, nothing twice: every 201 is one order, every order one outbox row and one message.
    wait_until(
        lambda: count(db_url, "SELECT count(*) FROM messaging_outboxevent WHERE sent_at IS NULL") == 0,
        timeout=60,
        message="the outbox to be relayed",
    )
    orders = count(db_url, "SELECT count(*) FROM orders_order")
    on_stream = bus.messages("ticketing", "order:created")
    outbox_ids = Counter(dict(query(db_url, "SELECT id, 1 FROM messaging_outboxevent WHERE subject = 'order:created'")))
    # The updates published during the outage are applied once the database is back.
    wait_until(
        lambda: (
            count(db_url, "SELECT count(*) FROM tickets_replica_ticket WHERE version = 1 AND title = 'v1'")
            == UPDATED_DURING_OUTAGE
        ),
        timeout=60,
        message="the updates held during the outage",
    )
    # Deliveries beyond one per message: what the worker handed back while the database was down.
    consumer = bus.call(bus.js.consumer_info("ticketing", durable_name(Subject.TICKET_UPDATED)))
    held = consumer.delivered.consumer_seq - len(bus.messages("ticketing", "ticket:updated"))
    record(
        "database-outage",
        outage_seconds=round(outage_seconds, 1),
        creates_sent=len(traffic.creates),
        creates_201=statuses[201],
        creates_by_status=dict(statuses),
        creates_sent_during_outage=len(sent_during),
        creates_answered_during_outage=len(during),
        answered_during_outage_by_status=dict(during_statuses),
        readyz_during_outage=dict(Counter(s for _, _, s, _ in probes_during)),
        orders_in_database=orders,
        outbox_rows=sum(outbox_ids.values()),
        order_created_on_stream=len(on_stream),
        ticket_updates_published_during_outage=published["published"],
        ticket_updates_applied_after=UPDATED_DURING_OUTAGE,
        ticket_updated_redeliveries=held,
        worker_log_database_unavailable=worker.log().count("database unavailable"),
        total_seconds=round(time.monotonic() - started, 1),
    )
    assert alive_during_outage and worker.alive()
    assert orders == statuses[201] == len(set(created_ids))
    assert Counter(m.headers["Nats-Msg-Id"] for m in on_stream) == outbox_ids
    assert Counter(json.loads(m.data)["id"] for m in on_stream) == Counter(created_ids)
    assert count(db_url, "SELECT count(*) FROM messaging_failedevent WHERE resolved_at IS NULL") == 0
    assert held > 0, "the worker never met the outage: nothing was tested"

    # While the database is down: 503 in the error shape, never 500; the readiness probe says 503 too.
    assert len(during) >= CREATORS and len(probes_during) >= 2, "too few answers during the outage"
    assert {p[2] for p in probes_during} == {503}
    assert set(statuses) <= {201, 503}, statuses
    assert [(s, b) for _, _, s, b in during if (s, b) != (503, SERVICE_UNAVAILABLE)] == []
    assert [(s, b) for _, _, s, b in sent_during if s != 201 and (s, b) != (503, SERVICE_UNAVAILABLE)] == []
    assert traffic.probes[-1][2] == 200
