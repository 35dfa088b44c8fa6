"""What the fault tests share beyond testsupport: their sizes, their figures, their traffic and the counts
they end on. The real processes (PostgreSQL, nats-servers, the API as shipped, the worker, netns) are
testsupport's."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings

from core.ids import new_object_id
from testsupport.http import Answer, post_order, session_cookie, timed_get
from testsupport.postgres import query
from testsupport.processes import Processes
from testsupport.service import QUICK_REDELIVERY
from testsupport.testrun import JetStream, service_env_for_tests, ticket_payload
from testsupport.waiting import wait_until

STREAM = "ticketing"
SERVICE_UNAVAILABLE = {"errors": [{"message": "Service unavailable"}]}


@dataclass(frozen=True)
class Scale:
    """How big each scenario runs: `ci` (the default `pytest` run) or `full` (RELIABILITY_SCALE=full)."""

    name: str
    cluster_orders: int
    cluster_ticket_events: int
    db_outage_seconds: float
    race_rounds: int
    race_users: int
    shuffle_tickets: int
    shuffle_versions: int
    worker_kills: int
    nats_outage_seconds: float
    fuzz_examples: int


SCALES = {
    "ci": Scale("ci", 200, 2000, 8, 5, 50, 60, 8, 2, 5, 50),
    "full": Scale("full", 500, 5000, 20, 20, 100, 200, 20, 5, 30, 300),
}


# The scenarios that bring their own PostgreSQL and NATS do not depend on DATABASE_URL: when the suite
# runs once per database, they run in the pass without one (the SQLite pass) and are skipped in the other.
own_servers_only = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")) and os.environ.get("RELIABILITY_OWN_SERVERS") != "always",
    reason="brings its own PostgreSQL and NATS: runs in the pass without DATABASE_URL "
    "(RELIABILITY_OWN_SERVERS=always runs it anyway)",
)


def own_servers_scenario(*, timeout: float) -> list[pytest.MarkDecorator]:
    """The marks of a module of scenarios on their own PostgreSQL and NATS, each given `timeout` seconds."""
    return [pytest.mark.reliability, pytest.mark.nats, own_servers_only, pytest.mark.timeout(timeout)]


def current_scale() -> Scale:
    name = os.environ.get("RELIABILITY_SCALE", "ci")
    if name not in SCALES:
        raise ValueError(f"RELIABILITY_SCALE must be one of {sorted(SCALES)}, got {name!r}")
    return SCALES[name]


def record(scenario: str, **figures: Any) -> None:
    """Print a scenario's figures; also append them as a JSON line to $RELIABILITY_REPORT when set."""
    line = json.dumps({"scenario": scenario, "scale": current_scale().name, **figures}, sort_keys=True)
    print(f"reliability: {line}")
    if path := os.environ.get("RELIABILITY_REPORT"):
        with open(path, "a") as report:
            report.write(line + "\n")


# -- the service under fault ------------------------------------------------------------------------------


def fault_env(*, database_url: str, data_dir: Path, nats_url: str = "nats://127.0.0.1:9", **extra: str) -> dict:
    """The service's production environment on the test's database and NATS, with the test run's keys (so
    its cookies are accepted) and quick redelivery (the scenarios wait for what a fault held back)."""
    return service_env_for_tests(
        database_url=database_url, data_dir=data_dir, nats_url=nats_url, **{**QUICK_REDELIVERY, **extra}
    )


def jetstream_for(processes: Processes, url: str) -> JetStream:
    """The test's own JetStream client of `url`, closed with the test's processes."""
    client = JetStream(url, name="reliability-tests")
    processes.cleanups.append(client.close)
    return client


def cookie_for(user_id: str | None = None) -> str:
    """The auth service's cookie for `user_id` (a new user by default), signed with the test run's key."""
    return session_cookie(user_id or new_object_id(), jwt_key=settings.JWT_KEY)


# -- what the scenarios count in the database and on the stream --------------------------------------------


def count(database_url: str, sql: str, params: Sequence[Any] = ()) -> int:
    return query(database_url, sql, params)[0][0]


def announce_tickets(jetstream: JetStream, database_url: str, number: int) -> list[str]:
    """`number` new tickets published as the tickets service does, waited for until all are in the replica."""
    tickets = [new_object_id() for _ in range(number)]
    jetstream.publish_all([("ticket:created", ticket_payload(t, 0, title="v0"), None) for t in tickets])
    wait_until(
        lambda: count(database_url, "SELECT count(*) FROM tickets_replica_ticket") == number,
        timeout=120,
        message="the tickets in the replica",
    )
    return tickets


def publish_updates(jetstream: JetStream, tickets: Sequence[str]) -> dict[str, int]:
    """`ticket:updated` to version 1 ("v1", price 1) for each of `tickets`."""
    return jetstream.publish_all([("ticket:updated", ticket_payload(t, 1, title="v1", price=1), None) for t in tickets])


def updates_applied(database_url: str) -> int:
    """Replica tickets at the version `publish_updates` sent."""
    return count(database_url, "SELECT count(*) FROM tickets_replica_ticket WHERE version = 1 AND title = 'v1'")


def unresolved_failed_events(database_url: str) -> int:
    return count(database_url, "SELECT count(*) FROM messaging_failedevent WHERE resolved_at IS NULL")


def wait_outbox_relayed(database_url: str, *, timeout: float = 120) -> None:
    wait_until(
        lambda: count(database_url, "SELECT count(*) FROM messaging_outboxevent WHERE sent_at IS NULL") == 0,
        timeout=timeout,
        message="the whole outbox to be relayed",
    )


def assert_exactly_once(jetstream: JetStream, database_url: str, created_ids: Sequence[str]) -> tuple[int, int]:
    """Once the outbox is relayed: every 201 is one order, one outbox row and one `order:created` on the
    stream (by `Nats-Msg-Id` and by order id). Returns (orders, messages on the stream)."""
    wait_outbox_relayed(database_url)
    orders = count(database_url, "SELECT count(*) FROM orders_order")
    on_stream = jetstream.messages("order:created", stream=STREAM)
    outbox_ids = Counter(
        dict(query(database_url, "SELECT id, 1 FROM messaging_outboxevent WHERE subject = 'order:created'"))
    )
    assert orders == len(created_ids) == len(set(created_ids))
    assert Counter(m.headers["Nats-Msg-Id"] for m in on_stream) == outbox_ids
    assert Counter(json.loads(m.data)["id"] for m in on_stream) == Counter(created_ids)
    return orders, len(on_stream)


# -- traffic ----------------------------------------------------------------------------------------------


class Traffic:
    """Creators posting orders for free tickets back to back (each on a connection of its own; a ticket whose
    create failed goes back in the pool; `pause` seconds between a client's creates, so at most
    `creators / pause` a second), and pollers of `probes` (name: URL) every `probe_every` seconds. Every
    answer is kept as an `Answer`: `creates`, and `probes[name]`."""

    def __init__(
        self,
        api: str,
        tickets: Sequence[str],
        *,
        probes: dict[str, str],
        creators: int = 4,
        pause: float = 0.02,
        probe_every: float = 0.5,
    ) -> None:
        self.api = api
        self.free = deque(tickets)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.creates: list[Answer] = []
        self.probes: dict[str, list[Answer]] = {name: [] for name in probes}
        self.errors: list[BaseException] = []
        self.pause = pause
        self.probe_every = probe_every
        self.threads = [threading.Thread(target=self.create_loop, args=(cookie_for(),)) for _ in range(creators)]
        self.threads += [threading.Thread(target=self.probe_loop, args=item) for item in probes.items()]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)

    def created(self) -> int:
        with self.lock:
            return sum(1 for answer in self.creates if answer.status == 201)

    def created_ids(self) -> list[str]:
        return [answer.body["id"] for answer in self.creates if answer.status == 201]

    def create_loop(self, cookie: str) -> None:
        try:
            while not self.stop.is_set():
                with self.lock:
                    if not self.free:
                        return
                    ticket = self.free.popleft()
                started = time.monotonic()
                try:
                    status, body = post_order(self.api, ticket, cookie)
                except requests.RequestException as exc:
                    status, body = 0, type(exc).__name__
                with self.lock:
                    self.creates.append(Answer(started, time.monotonic(), status, body))
                    if status != 201:
                        self.free.append(ticket)  # not reserved: another try may take it
                time.sleep(self.pause)
        except BaseException as exc:
            self.errors.append(exc)

    def probe_loop(self, name: str, url: str) -> None:
        try:
            while not self.stop.is_set():
                answer = timed_get(url)
                with self.lock:
                    self.probes[name].append(answer)
                self.stop.wait(self.probe_every)
        except BaseException as exc:
            self.errors.append(exc)
