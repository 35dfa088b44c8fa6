"""Connecting to NATS and setting up the stream and the shared durable consumers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict

import nats
import pytest
from nats.js.api import AckPolicy, DeliverPolicy, StorageType, StreamConfig

from core.ids import new_object_id
from messaging.events import Subject
from messaging.jetstream import durable_name, ensure_consumer, ensure_streams, nats_servers
from messaging.listener import Listener
from messaging.models import FailedEvent
from testsupport.testrun import ticket_payload
from testsupport.waiting import wait_until
from tickets_replica.listeners import on_ticket_created
from tickets_replica.models import Ticket

ALL_SUBJECTS = sorted(s.value for s in Subject)
LISTENED = [Subject.TICKET_CREATED, Subject.TICKET_UPDATED, Subject.EXPIRATION_COMPLETE, Subject.PAYMENT_CREATED]


@pytest.mark.parametrize(
    ("url", "servers"),
    [
        ("http://nats-srv:4222", ["nats://nats-srv:4222"]),
        ("nats://nats-srv:4222", ["nats://nats-srv:4222"]),
        ("nats-srv:4222", ["nats://nats-srv:4222"]),
        ("127.0.0.1:4222", ["nats://127.0.0.1:4222"]),
        ("https://nats.example.com:4222", ["tls://nats.example.com:4222"]),
        ("tls://nats.example.com:4222", ["tls://nats.example.com:4222"]),
        ("http://user:pass@nats-srv:4222/", ["nats://user:pass@nats-srv:4222"]),
        ("http://a:4222, nats://b:4222", ["nats://a:4222", "nats://b:4222"]),
    ],
)
def test_nats_url_forms(url, servers):
    assert nats_servers(url) == servers


@pytest.mark.nats
def test_worker_connects_with_the_course_http_url(run_worker, jetstream, nats_server, settings):
    settings.NATS_URL = nats_server.url.replace("nats://", "http://")
    run_worker()
    ticket_id = new_object_id()

    jetstream.publish("ticket:created", ticket_payload(ticket_id))

    wait_until(lambda: Ticket.objects.filter(id=ticket_id).exists(), message="the ticket")


@pytest.mark.nats
def test_worker_creates_the_stream_and_the_durable_consumers(run_worker, jetstream):
    run_worker()

    [stream] = jetstream.stream_names()
    assert stream.config.name == "ticketing"
    assert sorted(stream.config.subjects) == ALL_SUBJECTS
    assert stream.config.storage == StorageType.FILE
    assert stream.config.duplicate_window >= 120
    names = {durable_name(s) for s in LISTENED}
    assert names == {
        "orders-service-ticket-created",
        "orders-service-ticket-updated",
        "orders-service-expiration-complete",
        "orders-service-payment-created",
    }
    assert jetstream.consumer_names() == names
    for subject in LISTENED:
        info = jetstream.consumer_info(subject)
        assert info.config.durable_name == durable_name(subject)
        assert info.config.filter_subject == subject.value
        assert info.config.ack_policy == AckPolicy.EXPLICIT
        assert info.config.deliver_policy == DeliverPolicy.ALL


@pytest.mark.nats
def test_worker_uses_a_stream_that_already_captures_the_subjects(run_worker, jetstream):
    jetstream.call(jetstream.js.add_stream(StreamConfig(name="other", subjects=ALL_SUBJECTS)))

    run_worker()
    ticket_id = new_object_id()
    jetstream.publish("ticket:created", ticket_payload(ticket_id))

    wait_until(lambda: Ticket.objects.filter(id=ticket_id).exists(), message="the ticket")
    assert [s.config.name for s in jetstream.stream_names()] == ["other"]
    assert {jetstream.consumer_info(s).stream_name for s in LISTENED} == {"other"}


@pytest.mark.nats
def test_subjects_no_stream_captures_go_to_nats_stream(jetstream, settings):
    settings.NATS_STREAM = "orders-events"
    jetstream.call(jetstream.js.add_stream(StreamConfig(name="tickets", subjects=["ticket:created", "ticket:updated"])))
    jetstream.call(jetstream.js.add_stream(StreamConfig(name="orders-events", subjects=["order:created"])))

    streams = jetstream.call(ensure_streams(jetstream.js))

    assert streams == {
        Subject.TICKET_CREATED: "tickets",
        Subject.TICKET_UPDATED: "tickets",
        **dict.fromkeys(
            [Subject.ORDER_CREATED, Subject.ORDER_CANCELLED, Subject.EXPIRATION_COMPLETE, Subject.PAYMENT_CREATED],
            "orders-events",
        ),
    }
    assert sorted(jetstream.stream_info("orders-events").config.subjects) == [
        "expiration:complete",
        "order:cancelled",
        "order:created",
        "payment:created",
    ]
    # Run again (another replica starting): nothing changes.
    assert jetstream.call(ensure_streams(jetstream.js)) == streams
    assert len(jetstream.stream_names()) == 2


@pytest.mark.nats
def test_ensure_consumer_again_with_other_settings_keeps_one_durable(jetstream, settings):
    """A replica started with other settings (nats-server 2.10+ updates the durable, 2.9 keeps it)."""
    jetstream.ensure_streams()
    name = jetstream.call(ensure_consumer(jetstream.js, stream="ticketing", subject=Subject.TICKET_CREATED))
    settings.EVENT_ACK_WAIT_SECONDS = 7

    assert jetstream.call(ensure_consumer(jetstream.js, stream="ticketing", subject=Subject.TICKET_CREATED)) == name
    assert jetstream.consumer_names() == {"orders-service-ticket-created"}


@pytest.mark.nats
def test_two_workers_share_the_durable_consumers(run_worker, jetstream):
    """Each message goes to one worker of the queue group, never to both."""
    handled: dict[int, list[tuple[str, str]]] = defaultdict(list)
    lock = threading.Lock()

    def counting(worker_no: int) -> Listener:
        def handle(event) -> str:
            result = on_ticket_created(event)
            with lock:
                handled[worker_no].append((event.id, result))
            return result

        return Listener(Subject.TICKET_CREATED, handle)

    run_worker([counting(1)])
    run_worker([counting(2)])
    # Both workers have a pull request waiting before the burst, so both get a share of it.
    wait_until(
        lambda: jetstream.consumer_info(Subject.TICKET_CREATED).num_waiting >= 2, message="two waiting pull requests"
    )
    ticket_ids = [new_object_id() for _ in range(200)]

    jetstream.publish_all([("ticket:created", ticket_payload(t), t) for t in ticket_ids])

    wait_until(lambda: Ticket.objects.count() == 200, timeout=30, message="200 tickets")
    jetstream.wait_settled(Subject.TICKET_CREATED)
    with lock:
        seen = handled[1] + handled[2]
        assert sorted(seen) == sorted((t, "applied") for t in ticket_ids)  # each one once, by one worker
        assert handled[1] and handled[2], "one worker did all the work"
    assert not FailedEvent.objects.exists()


SYSTEM_NATS = "nats://127.0.0.1:4222"


@pytest.mark.nats
def test_stream_and_consumer_setup_on_the_system_nats_server(settings):
    """The contract requires nats-server 2.9: the setup runs against the one on 127.0.0.1:4222, if any.

    A shared server: only a stream and a queue group of the test's own are made, and removed after.
    """
    suffix = new_object_id()[-8:]
    settings.NATS_URL = SYSTEM_NATS
    settings.NATS_STREAM = f"orders-test-{suffix}"
    settings.NATS_QUEUE_GROUP = f"orders-test-{suffix}"

    async def scenario() -> None:
        try:
            client = await nats.connect(SYSTEM_NATS, connect_timeout=1, max_reconnect_attempts=0, allow_reconnect=False)
        except Exception as exc:
            pytest.skip(f"no nats-server on {SYSTEM_NATS}: {exc}")
        js = client.jetstream()
        made: list[tuple[str, str]] = []
        try:
            try:
                await js.account_info()
            except Exception as exc:
                pytest.skip(f"no JetStream on {SYSTEM_NATS}: {exc}")
            streams = await ensure_streams(js)
            ours = set(streams.values()) == {settings.NATS_STREAM}
            if ours:
                info = await js.stream_info(settings.NATS_STREAM)
                assert sorted(info.config.subjects) == ALL_SUBJECTS
                assert info.config.storage == StorageType.FILE
                assert info.config.duplicate_window >= 120
            for subject in LISTENED:
                name = await ensure_consumer(js, stream=streams[subject], subject=subject)
                made.append((streams[subject], name))
            settings.EVENT_ACK_WAIT_SECONDS = 11  # a replica with other settings keeps the existing durable
            for subject in LISTENED:
                assert await ensure_consumer(js, stream=streams[subject], subject=subject) == durable_name(subject)
                info = await js.consumer_info(streams[subject], durable_name(subject))
                assert info.config.filter_subject == subject.value
            assert await ensure_streams(js) == streams
            if ours:
                # De-duplication and a pull fetch on this server version (only on the test's own stream).
                headers = {"Nats-Msg-Id": f"test-{suffix}"}
                payload = b'{"orderId": "65f0c0ffee0000000000abcd"}'
                first = await js.publish("expiration:complete", payload, headers=headers)
                again = await js.publish("expiration:complete", payload, headers=headers)
                assert (first.duplicate, again.duplicate, again.seq) == (None, True, first.seq)
                sub = await js.pull_subscribe_bind(
                    durable=durable_name(Subject.EXPIRATION_COMPLETE), stream=settings.NATS_STREAM
                )
                [msg] = await sub.fetch(batch=5, timeout=2)
                assert msg.data == payload
                await msg.ack_sync()
        finally:
            for stream, name in made:
                with contextlib.suppress(Exception):
                    await js.delete_consumer(stream, name)
            with contextlib.suppress(Exception):
                if set((await ensure_streams_readonly(js)).values()) == {settings.NATS_STREAM}:
                    await js.delete_stream(settings.NATS_STREAM)
            await client.close()

    asyncio.run(scenario())


async def ensure_streams_readonly(js) -> dict[str, str]:
    """Which stream captures each subject, changing nothing."""
    return {s.value: await js.find_stream_name_by_subject(s.value) for s in Subject}
