"""Gray failures: links that drop every packet without a word (iptables -j DROP in a namespace of our own)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

from core.ids import new_object_id
from testsupport.testrun import ticket_payload
from testsupport.waiting import wait_until

from .support import (
    SERVICE_UNAVAILABLE,
    Answer,
    Bus,
    GrayTraffic,
    NatsCluster,
    migrate,
    own_servers_only,
    query,
    record,
    service_env,
    start_api,
    start_worker,
    timed_get,
)

pytestmark = [pytest.mark.reliability, pytest.mark.nats, own_servers_only, pytest.mark.timeout(900)]

STREAM = "ticketing"
TICKETS = 3000
UPDATED_DURING_OUTAGE = 200
# The targets of the gray-failure work (docs/RELIABILITY.md).
ANSWER_WITHIN_SECONDS = 10
READY_503_FROM_SECONDS = 10
FIRST_201_WITHIN_SECONDS = 10
OUTBOX_DRAINED_WITHIN_SECONDS = 15


def count(database_url: str, sql: str, params: tuple = ()) -> int:
    return query(database_url, sql, params)[0][0]


def seconds_until(check, *, timeout: float, message: str, since: float) -> float:
    """Seconds from `since` to the moment `check()` first holds (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(0.1)
    return time.monotonic() - since


def announce_tickets(bus: Bus, db_url: str) -> list[str]:
    """TICKETS new tickets on the stream, waited for until all are in the replica."""
    tickets = [new_object_id() for _ in range(TICKETS)]
    bus.publish_all([("ticket:created", ticket_payload(t, 0, title="v0"), new_object_id()) for t in tickets])
    wait_until(
        lambda: count(db_url, "SELECT count(*) FROM tickets_replica_ticket") == TICKETS,
        timeout=120,
        message="the tickets in the replica",
    )
    return tickets


def publish_updates(bus: Bus, tickets: list[str]) -> None:
    bus.publish_all([("ticket:updated", ticket_payload(t, 1, title="v1", price=1), new_object_id()) for t in tickets])


def all_updates_applied(db_url: str) -> bool:
    sql = "SELECT count(*) FROM tickets_replica_ticket WHERE version = 1 AND title = 'v1'"
    return count(db_url, sql) == UPDATED_DURING_OUTAGE


def worker_lists(port: int, problem: str) -> bool:
    answer = timed_get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    return isinstance(answer.body, dict) and problem in answer.body.get("problems", {})


def worker_problem(answers: list[Answer], name: str, start: float, end: float) -> Answer | None:
    """The first worker /healthz answer sent in [start, end) that lists `name` among its problems."""
    for answer in answers:
        if start <= answer.started < end and isinstance(answer.body, dict) and name in answer.body.get("problems", {}):
            return answer
    return None


def assert_exactly_once(bus: Bus, db_url: str, creates: list[Answer]) -> tuple[int, int]:
    """Every 201 is one order, one outbox row and one message on the stream; (orders, messages)."""
    wait_until(
        lambda: count(db_url, "SELECT count(*) FROM messaging_outboxevent WHERE sent_at IS NULL") == 0,
        timeout=60,
        message="the whole outbox to be relayed",
    )
    created_ids = [a.body["id"] for a in creates if a.status == 201]
    orders = count(db_url, "SELECT count(*) FROM orders_order")
    on_stream = bus.messages(STREAM, "order:created")
    outbox_ids = Counter(dict(query(db_url, "SELECT id, 1 FROM messaging_outboxevent WHERE subject = 'order:created'")))
    assert orders == len(created_ids) == len(set(created_ids))
    assert Counter(m.headers["Nats-Msg-Id"] for m in on_stream) == outbox_ids
    assert Counter(json.loads(m.data)["id"] for m in on_stream) == Counter(created_ids)
    return orders, len(on_stream)


@pytest.mark.parametrize("restart", [False, True], ids=["dark", "restarted-while-dark"])
def test_a_dark_database_is_503_within_seconds_and_loses_nothing(
    processes, netns, dark_postgres, nats_server, scale, restart
):
    """API and worker to PostgreSQL dark (packets dropped both ways) under traffic; with `restart`, the
    server is also restarted in the dark, so the connections it had will never answer again."""
    started = time.monotonic()
    dark_seconds = 180 if scale.name == "full" else 30
    socket_url = dark_postgres.socket_url("orders")
    dark_postgres.create_database("orders")
    env = service_env(database_url=dark_postgres.url("orders"), nats_url=nats_server.url, data_dir=processes.workdir)
    migrate(env)
    api = start_api(processes, "api", env)
    worker = start_worker(processes, "worker", env)
    bus = Bus(nats_server.url)
    processes.cleanups.append(bus.close)

    tickets = announce_tickets(bus, socket_url)
    updated = tickets[-UPDATED_DURING_OUTAGE:]  # the creators take tickets from the front

    with GrayTraffic(api, tickets[:-UPDATED_DURING_OUTAGE], worker_port=worker.metrics_port) as traffic:
        wait_until(lambda: traffic.created() >= 50, timeout=60, message="traffic before the outage")
        netns.blackhole(dark_postgres.port)
        dark_at = time.monotonic()
        # Ticket events keep coming: the worker must hold them through the dark, not drop or park them.
        publish_updates(bus, updated)
        if restart:
            time.sleep(max(0.0, dark_seconds / 2 - (time.monotonic() - dark_at)))
            dark_postgres.stop("immediate")
            dark_postgres.start()
        time.sleep(max(0.0, dark_seconds - (time.monotonic() - dark_at)))
        (database_now,) = query(socket_url, "SELECT now()")[0]
        netns.restore(dark_postgres.port)
        back_at = time.monotonic()
        outbox_drained = seconds_until(
            lambda: (
                count(
                    socket_url,
                    "SELECT count(*) FROM messaging_outboxevent WHERE sent_at IS NULL AND created_at <= %s",
                    (database_now,),
                )
                == 0
            ),
            timeout=120,
            message="the outbox of before the return to be relayed",
            since=back_at,
        )
        updates_applied = seconds_until(
            lambda: all_updates_applied(socket_url), timeout=120, message="the updates held", since=back_at
        )
        worker_clear = seconds_until(
            lambda: not worker_lists(worker.metrics_port, "database"),
            timeout=60,
            message="the worker's /healthz to clear",
            since=back_at,
        )
        created_at_return = traffic.created()
        wait_until(
            lambda: traffic.created() >= created_at_return + 50 and time.monotonic() > back_at + 20,
            timeout=90,
            message="creates after the return",
        )
    assert traffic.errors == []

    creates = traffic.creates
    # Sent while dark with time to be answered before the return: each must be 503 within the bound.
    eligible = [a for a in creates if dark_at <= a.started <= back_at - ANSWER_WITHIN_SECONDS]
    quick_503 = [a for a in eligible if (a.status, a.body) == (503, SERVICE_UNAVAILABLE) and a.seconds <= 10]
    sent_dark = [a for a in creates if dark_at <= a.started < back_at]
    after = [a for a in creates if a.started >= back_at + FIRST_201_WITHIN_SECONDS]
    first_201 = min((a.ended for a in creates if a.status == 201 and a.ended >= back_at), default=float("inf"))
    readyz = traffic.probes["readyz"]
    readyz_dark = [a for a in readyz if dark_at + READY_503_FROM_SECONDS <= a.started and a.ended <= back_at]
    healthz_dark = [a for a in traffic.probes["healthz"] if dark_at <= a.started < back_at]
    reported = worker_problem(traffic.probes["worker"], "database", dark_at, back_at)
    statuses = Counter(a.status for a in creates)
    orders, messages = assert_exactly_once(bus, socket_url, creates)
    record(
        "database-dark-restarted" if restart else "database-dark",
        dark_seconds=round(back_at - dark_at, 1),
        creates_sent=len(creates),
        creates_by_status=dict(statuses),
        creates_sent_while_dark=len(sent_dark),
        sent_while_dark_by_status=dict(Counter(a.status for a in sent_dark)),
        eligible_creates=len(eligible),
        answered_503_within_10s=len(quick_503),
        share_503_within_10s=round(len(quick_503) / max(len(eligible), 1), 3),
        slowest_answer_while_dark_seconds=round(max((a.seconds for a in sent_dark), default=0), 1),
        readyz_while_dark=dict(Counter(a.status for a in readyz_dark)),
        slowest_readyz_seconds=round(max((a.seconds for a in readyz), default=0), 1),
        api_healthz_while_dark=dict(Counter(a.status for a in healthz_dark)),
        slowest_api_healthz_seconds=round(max((a.seconds for a in healthz_dark), default=0), 2),
        worker_reported_database_after_seconds=round(reported.started - dark_at, 1) if reported else None,
        worker_problem=reported.body["problems"]["database"] if reported else None,
        worker_healthz_clear_after_return_seconds=round(worker_clear, 1),
        first_201_after_return_seconds=round(first_201 - back_at, 1),
        outbox_drained_after_return_seconds=round(outbox_drained, 1),
        held_updates_applied_after_return_seconds=round(updates_applied, 1),
        slowest_create_from_10s_after_return_seconds=round(max((a.seconds for a in after), default=0), 2),
        orders_in_database=orders,
        order_created_on_stream=messages,
        total_seconds=round(time.monotonic() - started, 1),
    )

    assert worker.alive()
    assert len(eligible) >= 8, "too few creates while dark: nothing was tested"
    assert len(quick_503) >= 0.95 * len(eligible), [(a.status, round(a.seconds, 1)) for a in eligible][:20]
    assert set(statuses) <= {201, 503}, statuses  # no 5xx but 503, no client timeout
    assert [a.body for a in creates if a.status == 503 and a.body != SERVICE_UNAVAILABLE] == []
    assert readyz_dark and {a.status for a in readyz_dark} == {503}
    assert healthz_dark and {a.status for a in healthz_dark} == {200}
    assert reported is not None, "the worker's /healthz never said the database was away"
    assert first_201 - back_at <= FIRST_201_WITHIN_SECONDS
    assert outbox_drained <= OUTBOX_DRAINED_WITHIN_SECONDS
    # No request thread stuck past the return: everything sent 10 s after it is answered promptly.
    assert after and max(a.seconds for a in after) <= ANSWER_WITHIN_SECONDS
    assert readyz[-1].status == 200
    assert count(socket_url, "SELECT count(*) FROM messaging_failedevent WHERE resolved_at IS NULL") == 0


def connected_node(log: str, cluster: NatsCluster) -> int:
    """The index of the node the worker's log last says it (re)connected to."""
    found = re.findall(r"nats: (?:re)?connected to ([\d.]+:\d+)", log)
    assert found, "the worker never said where it connected"
    return cluster.client_ports.index(int(found[-1].rsplit(":", 1)[1]))


def test_the_workers_nats_node_dark_in_a_cluster_moves_it_to_another_and_loses_nothing(
    processes, netns, postgres_server, scale
):
    """Three JetStream nodes in a namespace; the client port of the node the worker uses goes dark (the node
    runs on, routes and all): the worker must notice, move to another node, and lose or double nothing."""
    started = time.monotonic()
    dark_seconds = 120 if scale.name == "full" else 30
    cluster = NatsCluster(processes, host=netns.ip, prefix=netns.prefix).start()
    db_url = postgres_server.create_database("orders")
    env = service_env(database_url=db_url, nats_url=cluster.url, data_dir=processes.workdir, NATS_STREAM_REPLICAS="3")
    migrate(env)
    api = start_api(processes, "api", env)
    worker = start_worker(processes, "worker", env)
    dark = connected_node(worker.log(), cluster)
    # The test's own client uses another node, so the dark link is the worker's alone.
    bus = Bus(cluster.node_url((dark + 1) % 3))
    processes.cleanups.append(bus.close)
    assert bus.stream_info(STREAM).config.num_replicas == 3

    tickets = announce_tickets(bus, db_url)
    updated = tickets[-UPDATED_DURING_OUTAGE:]

    with GrayTraffic(api, tickets[:-UPDATED_DURING_OUTAGE], worker_port=worker.metrics_port) as traffic:
        wait_until(lambda: traffic.created() >= 50, timeout=60, message="traffic before the blackhole")
        netns.blackhole(cluster.client_ports[dark])
        dark_at = time.monotonic()
        (database_then,) = query(db_url, "SELECT now()")[0]
        publish_updates(bus, updated)
        # Events flow again: an order created after the blackhole reaches the stream (only this worker relays).
        flowing = seconds_until(
            lambda: (
                count(
                    db_url,
                    "SELECT count(*) FROM messaging_outboxevent WHERE created_at > %s AND sent_at IS NOT NULL",
                    (database_then,),
                )
                > 0
            ),
            timeout=120,
            message="an order created in the dark to reach the stream",
            since=dark_at,
        )
        moved_to = connected_node(worker.log(), cluster)
        updates_applied = seconds_until(
            lambda: all_updates_applied(db_url), timeout=120, message="the updates", since=dark_at
        )
        time.sleep(max(0.0, dark_seconds - (time.monotonic() - dark_at)))
        netns.restore(cluster.client_ports[dark])
        back_at = time.monotonic()
        created_at_return = traffic.created()
        wait_until(lambda: traffic.created() >= created_at_return + 50, timeout=60, message="creates after the return")
    assert traffic.errors == []
    wait_until(
        lambda: count(db_url, "SELECT count(*) FROM messaging_outboxevent WHERE sent_at IS NULL") == 0,
        timeout=60,
        message="the outbox to be relayed",
    )
    reported = worker_problem(traffic.probes["worker"], "nats", dark_at, back_at)
    statuses = Counter(a.status for a in traffic.creates)
    orders, messages = assert_exactly_once(bus, db_url, traffic.creates)
    record(
        "nats-node-dark",
        nats_servers=3,
        stream_replicas=3,
        dark_seconds=round(back_at - dark_at, 1),
        dark_node=f"n{dark + 1}",
        worker_moved_to=f"n{moved_to + 1}",
        worker_reported_nats_after_seconds=round(reported.started - dark_at, 1) if reported else None,
        worker_problem=reported.body["problems"]["nats"] if reported else None,
        events_flowing_again_after_seconds=round(flowing, 1),
        updates_published_in_the_dark_applied_after_seconds=round(updates_applied, 1),
        creates_by_status=dict(statuses),
        orders_in_database=orders,
        order_created_on_stream=messages,
        worker_healthz_by_status=dict(Counter(a.status for a in traffic.probes["worker"])),
        total_seconds=round(time.monotonic() - started, 1),
    )
    assert worker.alive()
    assert moved_to != dark
    assert statuses == {201: statuses[201]}, statuses  # the API never waits on NATS (the outbox does)
    assert reported is not None and reported.started - dark_at <= 30, "the worker never reported the dark link"
    assert flowing <= 30
    assert count(db_url, "SELECT count(*) FROM messaging_failedevent WHERE resolved_at IS NULL") == 0
