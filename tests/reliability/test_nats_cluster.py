"""A three-node JetStream cluster loses its stream leader (SIGKILL) in the middle of orders and ticket events."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from core.ids import new_object_id
from tests.contract.published import assert_published_events_conform
from testsupport.http import post_order
from testsupport.nats import NatsCluster
from testsupport.testrun import JetStream, ticket_payload
from testsupport.waiting import wait_until

from .support import (
    STREAM,
    announce_tickets,
    assert_exactly_once,
    cookie_for,
    count,
    own_servers_scenario,
    record,
    unresolved_failed_events,
)

pytestmark = own_servers_scenario(timeout=900)

USERS = 50
UPDATES_PER_TICKET = 4  # each event ticket: ticket:created, then versions 1..4
CHUNKS = 20


def leader_of(jetstream: JetStream) -> str | None:
    try:
        return jetstream.stream_info(STREAM).cluster.leader
    except Exception:  # no leader while an election runs
        return None


def test_killing_the_stream_leader_loses_nothing_and_duplicates_nothing(
    processes, start_service, postgres_server, scale
):
    started = time.monotonic()
    cluster = NatsCluster(processes).start()
    db_url = postgres_server.create_database("orders")
    service = start_service(database_url=db_url, nats_url=cluster.url, apis=2, workers=2, NATS_STREAM_REPLICAS="3")
    apis, workers, bus = [api.url for api in service.apis], service.workers, service.jetstream
    info = bus.stream_info(STREAM)
    assert info.config.num_replicas == 3
    assert len(info.cluster.replicas) == 2

    # The tickets the orders will reserve reach the replica first.
    order_tickets = announce_tickets(bus, db_url, scale.cluster_orders)

    event_tickets = [new_object_id() for _ in range(scale.cluster_ticket_events // (UPDATES_PER_TICKET + 1))]
    events = [("ticket:created", ticket_payload(t, 0, title="v0"), new_object_id()) for t in event_tickets]
    events += [
        ("ticket:updated", ticket_payload(t, v, title=f"v{v}", price=v), new_object_id())
        for v in range(1, UPDATES_PER_TICKET + 1)
        for t in event_tickets
    ]
    users = [cookie_for() for _ in range(USERS)]
    api_cycle = itertools.cycle(apis)
    jobs = [(next(api_cycle), ticket, users[n % USERS]) for n, ticket in enumerate(order_tickets)]
    results: list[tuple[int, object]] = []
    lock = threading.Lock()

    def create(job: tuple[str, str, str]) -> None:
        outcome = post_order(*job)
        with lock:
            results.append(outcome)

    publish_counts: dict[str, int] = {}
    publish_error: list[BaseException] = []

    def publish() -> None:
        """Spread the events over the creates: chunk n waits for n/CHUNKS of the creates."""
        try:
            for n in range(CHUNKS):
                due = n * len(jobs) // CHUNKS
                wait_until(lambda due=due: len(results) >= due, timeout=300, message="the creates")
                chunk = events[n * len(events) // CHUNKS : (n + 1) * len(events) // CHUNKS]
                bus.publish_all(chunk, counts=publish_counts)
        except BaseException as exc:
            publish_error.append(exc)

    leader = bus.stream_info(STREAM).cluster.leader
    traffic_started = time.monotonic()
    publisher = threading.Thread(target=publish, name="ticket-events")
    publisher.start()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(create, job) for job in jobs]
        # Kill the leader once a quarter of each kind of traffic has gone through.
        wait_until(
            lambda: len(results) >= len(jobs) // 4 and publish_counts.get("published", 0) >= len(events) // 4,
            timeout=300,
            message="a quarter of the traffic",
        )
        before_kill = {"creates": len(results), "events": publish_counts["published"]}
        killed_at = time.monotonic()
        cluster.nodes[leader].kill()
        new_leader = wait_until(
            lambda: (found := leader_of(bus)) and found != leader and found, timeout=60, message="a new stream leader"
        )
        election_seconds = time.monotonic() - killed_at
        for future in futures:
            future.result()
    publisher.join(timeout=600)
    assert not publisher.is_alive() and not publish_error, publish_error
    traffic_seconds = time.monotonic() - traffic_started

    # No HTTP error: the API never waits on NATS (the outbox does).
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: len(jobs)}, [r for r in results if r[0] != 201][:5]
    assert publish_counts["published"] == len(events)
    assert before_kill["events"] < len(events), "every event was published before the kill: nothing was tested"
    order_ids = [body["id"] for _, body in results]
    assert len(set(order_ids)) == len(jobs)

    # Every order:created reaches the stream exactly once, relayed by two workers through the election.
    orders, on_stream = assert_exactly_once(bus, db_url, order_ids)

    # The replica converged: every event ticket at its newest version, nothing waiting or set aside.
    converge_started = time.monotonic()
    wait_until(
        lambda: (
            count(
                db_url,
                "SELECT count(*) FROM tickets_replica_ticket WHERE version = %s AND title = %s AND price = %s",
                (UPDATES_PER_TICKET, f"v{UPDATES_PER_TICKET}", UPDATES_PER_TICKET),
            )
            == len(event_tickets)
        ),
        timeout=180,
        message="the replica to converge",
    )
    converge_seconds = time.monotonic() - converge_started
    assert count(db_url, "SELECT count(*) FROM tickets_replica_ticket") == len(event_tickets) + len(order_tickets)
    assert unresolved_failed_events(db_url) == 0
    assert all(worker.alive() for worker in workers)

    # The killed node comes back and catches up with the stream.
    cluster.start_node(cluster.index_of(leader))

    def caught_up() -> bool:
        try:
            replicas = bus.stream_info(STREAM).cluster.replicas or []
        except Exception:
            return False
        return len(replicas) == 2 and all(r.current and not r.offline and not r.lag for r in replicas)

    wait_until(caught_up, timeout=120, message=f"{leader} to rejoin and catch up")
    stream_messages = bus.stream_info(STREAM).state.messages
    assert stream_messages == len(order_tickets) + len(events) + len(jobs)

    record(
        "nats-cluster-leader-kill",
        nats_servers=3,
        stream_replicas=3,
        apis=2,
        workers=2,
        killed=leader,
        new_leader=new_leader,
        election_seconds=round(election_seconds, 2),
        creates=len(jobs),
        creates_201=statuses[201],
        creates_before_kill=before_kill["creates"],
        ticket_events=len(events),
        events_before_kill=before_kill["events"],
        publish_retries=publish_counts["retries"],
        publish_duplicates_dropped=publish_counts["duplicates"],
        orders_in_database=orders,
        order_created_on_stream=on_stream,
        replica_tickets_at_newest=len(event_tickets),
        stream_messages=stream_messages,
        traffic_seconds=round(traffic_seconds, 1),
        converge_after_traffic_seconds=round(converge_seconds, 1),
        total_seconds=round(time.monotonic() - started, 1),
    )
    assert_published_events_conform(cluster.url)
