"""Earlier faults, kept at CI size on the database under test: races, killed workers, a NATS outage.

messaging/tests/test_faults.py covers each fault once, small and in-process; these run the real
processes (the API as shipped, granian; `run_listeners`) longer and harder, and grow with RELIABILITY_SCALE.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db.models import Sum

from core.ids import new_object_id
from messaging.events import Subject
from messaging.models import FailedEvent, OutboxEvent
from messaging.order_status import ORDER_ACTIVE_STATUSES
from orders.models import Order
from testsupport.http import post_order
from testsupport.service import start_api, start_worker
from testsupport.testrun import database_under_test_url, ticket_payload
from testsupport.waiting import wait_until
from tickets_replica.models import Ticket

from .support import STREAM, cookie_for, fault_env, jetstream_for, record

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

ALREADY_RESERVED = {"errors": [{"message": "Ticket is already reserved"}]}


@pytest.fixture
def env_for(transactional_db, processes):
    """The service's environment on the test database, for a given NATS URL."""

    def make(nats_url: str = "nats://127.0.0.1:9") -> dict[str, str]:
        return fault_env(database_url=database_under_test_url(), nats_url=nats_url, data_dir=processes.workdir)

    return make


def test_rounds_of_users_racing_for_one_ticket_reserve_each_exactly_once(processes, env_for, make_ticket, scale):
    api = start_api(processes, "api", env_for()).url
    tickets = [make_ticket() for _ in range(scale.race_rounds)]
    users = [cookie_for() for _ in range(scale.race_users)]
    started = time.monotonic()
    statuses: Counter = Counter()

    for ticket in tickets:
        barrier = threading.Barrier(len(users))

        def race(cookie: str, ticket_id: str = ticket.id, barrier: threading.Barrier = barrier) -> tuple[int, object]:
            with requests.Session() as session:
                # Connect first (an anonymous 401 touches no table): the barrier then releases requests.
                session.get(f"{api}/api/orders", timeout=30)
                barrier.wait(timeout=60)
                response = session.post(
                    f"{api}/api/orders", json={"ticketId": ticket_id}, headers={"Cookie": cookie}, timeout=60
                )
            return response.status_code, response.json()

        with ThreadPoolExecutor(len(users)) as pool:
            results = list(pool.map(race, users))
        statuses.update(status for status, _ in results)
        assert [r for r in results if r[0] >= 500] == []
        assert sorted(status for status, _ in results) == [201] + [400] * (len(users) - 1), results
        assert all(body == ALREADY_RESERVED for status, body in results if status == 400)
        [winner] = [body for status, body in results if status == 201]
        assert Order.objects.filter(ticket=ticket, status__in=ORDER_ACTIVE_STATUSES).get().id == winner["id"]

    assert Order.objects.count() == len(tickets)
    assert OutboxEvent.objects.filter(subject="order:created").count() == len(tickets)
    record(
        "reservation-races",
        rounds=len(tickets),
        users_per_round=len(users),
        requests=sum(statuses.values()),
        by_status=dict(statuses),
        orders=Order.objects.count(),
        seconds=round(time.monotonic() - started, 1),
    )


APPLIED = re.compile(r" applied (ticket:\w+) seq=(\d+) ")


def test_shuffled_ticket_events_survive_repeated_worker_sigkills(processes, env_for, nats_server, scale):
    env = env_for(nats_server.url)
    jetstream = jetstream_for(processes, nats_server.url)
    seed = random.randrange(2**32)
    ticket_ids = [new_object_id() for _ in range(scale.shuffle_tickets)]
    last = scale.shuffle_versions
    events = [("ticket:created", ticket_payload(t, 0, title="v0"), new_object_id()) for t in ticket_ids]
    events += [
        ("ticket:updated", ticket_payload(t, v, title=f"v{v}", price=v), new_object_id())
        for v in range(1, last + 1)
        for t in ticket_ids
    ]
    random.Random(seed).shuffle(events)
    started = time.monotonic()

    def converged() -> int:
        return Ticket.objects.filter(version=last, title=f"v{last}").count()

    def progress() -> tuple[int, int]:
        return Ticket.objects.count(), Ticket.objects.aggregate(versions=Sum("version"))["versions"] or 0

    # In portions, a worker SIGKILLed while it applies each but the last, once the replica has moved: every
    # kill lands with events unapplied, however fast the worker is next to this test's polling.
    portions = [events[k :: scale.worker_kills + 1] for k in range(scale.worker_kills + 1)]
    workers = [start_worker(processes, "worker-1", env)]
    for kill, portion in enumerate(portions[:-1], start=1):
        before = progress()
        jetstream.publish_all(portion, window=256)
        wait_until(lambda before=before: progress() != before, timeout=180, message=f"kill {kill} (seed {seed})")
        workers[-1].kill()
        assert converged() < len(ticket_ids), f"the replica was whole before kill {kill}: nothing was tested"
        workers.append(start_worker(processes, f"worker-{kill + 1}", env))
    jetstream.publish_all(portions[-1], window=256)

    wait_until(lambda: converged() == len(ticket_ids), timeout=300, message=f"the replica to converge (seed {seed})")
    assert set(Ticket.objects.values_list("id", "title", "price", "version")) == {
        (t, f"v{last}", float(last), last) for t in ticket_ids
    }
    assert not FailedEvent.objects.filter(resolved_at__isnull=True).exists()
    applied = Counter(seq for w in workers for _, seq in APPLIED.findall(w.log()))
    assert [seq for seq, n in applied.items() if n > 1] == [], "an event was applied twice"
    record(
        "shuffled-events-worker-sigkills",
        tickets=len(ticket_ids),
        events=len(events),
        worker_sigkills=len(workers) - 1,
        applied_log_lines=sum(applied.values()),
        seed=seed,
        seconds=round(time.monotonic() - started, 1),
    )


@pytest.mark.own_nats_server
def test_orders_created_through_a_nats_outage_reach_the_stream_once(
    processes, env_for, nats_server, make_ticket, scale
):
    env = env_for(nats_server.url)
    api = start_api(processes, "api", env).url
    worker = start_worker(processes, "worker", env)
    jetstream = jetstream_for(processes, nats_server.url)
    tickets = [make_ticket().id for _ in range(int(scale.nats_outage_seconds * 40) + 200)]
    cookie = cookie_for()
    results: list[tuple[int, object]] = []
    stop = threading.Event()

    def create() -> None:
        for ticket in tickets:
            if stop.is_set():
                return
            results.append(post_order(api, ticket, cookie))
            time.sleep(0.02)

    creator = threading.Thread(target=create)
    creator.start()
    try:
        wait_until(lambda: len(results) >= 30, timeout=60, message="creates before the outage")
        nats_server.kill()  # SIGKILL: no goodbye to the relay's connection
        before_outage = len(results)
        time.sleep(scale.nats_outage_seconds)
        during_outage = len(results) - before_outage
        nats_server.start()
        wait_until(lambda: len(results) >= before_outage + during_outage + 30, timeout=60, message="creates after")
    finally:
        stop.set()
        creator.join(120)

    statuses = Counter(status for status, _ in results)
    assert statuses == {201: len(results)}, [r for r in results if r[0] != 201][:5]
    wait_until(
        lambda: not OutboxEvent.objects.filter(sent_at__isnull=True).exists(),
        timeout=120,
        message="the outbox to drain after the outage",
    )
    on_stream = jetstream.messages(Subject.ORDER_CREATED.value, stream=STREAM)
    assert Counter(m.headers["Nats-Msg-Id"] for m in on_stream) == Counter(
        OutboxEvent.objects.filter(subject="order:created").values_list("id", flat=True)
    )
    assert Counter(json.loads(m.data)["id"] for m in on_stream) == Counter(body["id"] for _, body in results)
    assert worker.alive()
    record(
        "nats-outage-during-creates",
        outage_seconds=scale.nats_outage_seconds,
        creates=len(results),
        creates_201=statuses[201],
        created_during_outage=during_outage,
        order_created_on_stream=len(on_stream),
    )
