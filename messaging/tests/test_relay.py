"""The relay's publish window, its ordering and error policy, and its wake-up at commit."""

from __future__ import annotations

import contextlib
import signal
import time
from collections import Counter

import nats.js.errors
import pytest
from django.conf import settings
from django.db import connection

from core.ids import new_object_id
from messaging import relay
from messaging.events import OrderCancelled, OrderCreated
from messaging.models import OutboxEvent
from messaging.relay import publish_batch, relay_once
from orders.services import order_create
from testsupport.waiting import wait_until

pytestmark = pytest.mark.nats


def outbox_rows(count: int, *, per_order: int = 1) -> list[OutboxEvent]:
    """`count` orders' events written straight to the outbox: created, then cancelled (per_order=2)."""
    rows = []
    for _ in range(count):
        order_id = new_object_id()
        ticket = {"id": new_object_id(), "price": 20}
        created = OrderCreated(
            id=order_id, version=0, status="created", userId="u1", expiresAt="2026-11-25T10:15:00.000Z", ticket=ticket
        )
        rows.append(OutboxEvent(subject="order:created", payload=created.to_payload()))
        if per_order == 2:
            cancelled = OrderCancelled(id=order_id, version=1, ticket={"id": ticket["id"]})
            rows.append(OutboxEvent(subject="order:cancelled", payload=cancelled.to_payload()))
    for row in rows:
        time.sleep(0.0001)  # distinct created_at: the outbox's order is the order of this list
        row.save()
    return rows


def sent_ids() -> set[str]:
    return set(OutboxEvent.objects.filter(sent_at__isnull=False).values_list("id", flat=True))


def on_stream(jetstream, *subjects: str) -> Counter:
    return Counter(m.headers["Nats-Msg-Id"] for s in subjects for m in jetstream.messages(s))


class Watched:
    """The real JetStream context, counting the publishes in flight; `on_publish(n)` runs before the n-th."""

    def __init__(self, js, on_publish=None) -> None:
        self.js = js
        self.on_publish = on_publish
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def publish(self, *args, **kwargs):
        self.calls += 1
        if self.on_publish:
            self.on_publish(self.calls, kwargs["headers"]["Nats-Msg-Id"])
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self.js.publish(*args, **kwargs)
        finally:
            self.in_flight -= 1


def test_the_window_keeps_many_publishes_in_flight_and_an_aggregates_events_in_order(transactional_db, jetstream):
    rows = outbox_rows(150, per_order=2)
    jetstream.ensure_streams()
    watched = Watched(jetstream.js)

    assert jetstream.call(relay_once(watched)) == 300

    assert watched.most_in_flight > 10
    assert sent_ids() == {row.id for row in rows}
    seq = {m.headers["Nats-Msg-Id"]: m.seq for s in ("order:created", "order:cancelled") for m in jetstream.messages(s)}
    assert sorted(seq) == sorted(row.id for row in rows)
    for created, cancelled in zip(rows[::2], rows[1::2], strict=True):
        assert seq[created.id] < seq[cancelled.id], "an order:cancelled overtook its order:created"


def test_a_refused_event_holds_back_its_aggregate_only(transactional_db, jetstream):
    first, then, other = outbox_rows(1, per_order=2) + outbox_rows(1)
    jetstream.ensure_streams()

    def refuse_first(_, msg_id: str) -> None:
        if msg_id == first.id:
            raise nats.js.errors.APIError(code=503, description="refused for the test")

    with pytest.raises(nats.js.errors.APIError):
        jetstream.call(relay_once(Watched(jetstream.js, on_publish=refuse_first)))
    assert sent_ids() == {other.id}  # `then` waits: it must not land before `first`

    assert jetstream.call(relay_once(jetstream.js)) == 2
    assert [m.headers["Nats-Msg-Id"] for m in jetstream.messages("order:created")] == [other.id, first.id]
    assert [m.headers["Nats-Msg-Id"] for m in jetstream.messages("order:cancelled")] == [then.id]


@pytest.mark.own_nats_server
def test_nats_stopping_mid_batch_marks_only_the_acked_rows(transactional_db, jetstream, nats_server, monkeypatch):
    monkeypatch.setattr(settings, "NATS_PUBLISH_TIMEOUT_SECONDS", 1.0)
    rows = outbox_rows(400)
    jetstream.ensure_streams()

    def stop_server(call: int, _) -> None:
        if call == 150:
            nats_server.stop()

    watched = Watched(jetstream.js, on_publish=stop_server)
    with pytest.raises(Exception):  # noqa: B017 (a timeout or a closed connection, as nats-py sees it)
        jetstream.call(relay_once(watched, limit=400))
    marked = sent_ids()
    assert 0 < len(marked) < 150 + relay.PUBLISH_WINDOW  # the window closed at the first failure
    assert watched.calls < 400

    nats_server.start()
    # Every row marked sent was acked, hence stored: it is on the stream after the restart.
    wait_until(lambda: jetstream.client.is_connected, timeout=15, message="the test client to reconnect")
    assert marked <= set(on_stream(jetstream, "order:created"))

    def relayed_the_rest() -> bool:
        with contextlib.suppress(Exception):  # the client may still be reconnecting
            jetstream.call(relay_once(jetstream.js, limit=400))
        return len(sent_ids()) == 400

    wait_until(relayed_the_rest, timeout=30, message="the rest to be relayed after the restart")
    assert on_stream(jetstream, "order:created") == Counter(row.id for row in rows)


def test_several_relays_at_once_put_each_event_on_the_stream_once(run_worker, jetstream):
    run_worker()
    run_worker()
    rows = outbox_rows(200)

    wait_until(lambda: len(sent_ids()) == 200, timeout=20, message="the outbox to be relayed")
    assert on_stream(jetstream, "order:created") == Counter(row.id for row in rows)


@pytest.fixture
def slow_poll(settings):
    """A poll interval far longer than the test waits: only a wake-up at commit can deliver in time."""
    settings.OUTBOX_POLL_SECONDS = 30


def relayed_within(jetstream, seconds: float, make_ticket) -> float:
    """Create an order; seconds until its order:created is on the stream (fails after `seconds`)."""
    order = order_create(user_id="u1", ticket_id=make_ticket().id)
    committed = time.monotonic()
    wait_until(
        lambda: order.id in {p["id"] for p in jetstream.payloads("order:created")},
        timeout=seconds,
        message="order:created, which only a wake-up at commit delivers this soon",
    )
    return time.monotonic() - committed


def listener_pids() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            # This database's only: the suite's other processes run relays on databases of their own.
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s AND query ILIKE %s",
            [relay.LISTENER_APPLICATION_NAME, "LISTEN%"],
        )
        return [pid for (pid,) in cursor.fetchall()]


def test_a_commit_wakes_the_relay(run_worker, jetstream, slow_poll, make_ticket):
    """PostgreSQL: the outbox trigger's NOTIFY; SQLite: PRAGMA data_version."""
    run_worker()
    if connection.vendor == "postgresql":
        wait_until(listener_pids, message="the relay's LISTEN connection")
    time.sleep(0.5)  # past the passes the start itself triggers
    for _ in range(3):
        relayed_within(jetstream, 5, make_ticket)


def test_the_listen_connection_comes_back_after_it_is_killed(run_worker, jetstream, slow_poll, make_ticket):
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    run_worker()
    [pid] = wait_until(listener_pids, message="the relay's LISTEN connection")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    wait_until(lambda: listener_pids() and listener_pids() != [pid], timeout=15, message="a new LISTEN connection")
    time.sleep(0.5)
    relayed_within(jetstream, 5, make_ticket)


def test_a_relay_killed_mid_burst_loses_nothing(worker_process, jetstream):
    rows = outbox_rows(3000)
    jetstream.ensure_streams()
    first = worker_process(OUTBOX_POLL_SECONDS="0.05")
    stream = jetstream.stream_name("order:created")
    wait_until(lambda: jetstream.stream_info(stream).state.messages >= 200, timeout=30, message="the relay under way")
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert len(sent_ids()) < len(rows), "the relay finished before it was killed: nothing was tested"

    worker_process(OUTBOX_POLL_SECONDS="0.05")
    wait_until(lambda: len(sent_ids()) == len(rows), timeout=60, message="the outbox to be relayed")
    assert on_stream(jetstream, "order:created") == Counter(row.id for row in rows)


def test_publish_batch_reports_counts_and_latencies(transactional_db, jetstream):
    rows = outbox_rows(5)
    jetstream.ensure_streams()

    result = jetstream.call(publish_batch(jetstream.js, rows))

    assert (result.published, result.failed, result.not_sent, result.error) == (5, [], 0, None)
    assert sorted(result.acked) == sorted(row.id for row in rows)
    assert len(result.latencies) == 5 and all(0 < x <= result.duration for x in result.latencies)
    assert not sent_ids()  # publish_batch publishes; marking is the caller's
