"""`process_batch` on real batches from a real pull consumer: poison isolation, duplicates, outages, stops."""

from __future__ import annotations

import asyncio

import pytest
from django.db import OperationalError

from core.ids import new_object_id
from messaging.consumer import process_batch
from messaging.events import Subject
from messaging.listener import Listener, Outcome, registered_listeners
from messaging.models import FailedEvent
from testsupport.testrun import ticket_payload
from testsupport.waiting import wait_until
from tickets_replica.models import Ticket

pytestmark = [pytest.mark.nats, pytest.mark.django_db(transaction=True)]

APPLIED, IGNORED, REJECTED, RETRYING = Outcome.APPLIED, Outcome.IGNORED, Outcome.REJECTED, Outcome.RETRYING


def real(subject: str) -> Listener:
    return registered_listeners()[Subject(subject)]


def process(jetstream, listener: Listener, messages: list, stop: asyncio.Event | None = None) -> list:
    return jetstream.call(process_batch(listener, messages, stop=stop))


def replica(ticket_id: str) -> tuple | None:
    return Ticket.objects.filter(id=ticket_id).values_list("title", "price", "version").first()


def poisoned(subject: str, *, title: str = "poison") -> Listener:
    """The real listener, except that a ticket titled `title` makes its transaction fail, alone or in a batch."""
    listener = real(subject)

    def check(events) -> None:
        if any(e.title == title for e in events):
            raise RuntimeError(f"cannot apply {title}")

    def handle(event) -> str:
        check([event])
        return listener.handle(event)

    def handle_batch(events) -> list[str]:
        results = listener.handle_batch(events)  # written first, so the failure must roll it back
        check(events)
        return results

    return Listener(listener.subject, handle, handle_batch=handle_batch)


def test_a_batch_is_applied_in_one_go_and_acked(jetstream, consumer):
    """What the replica ignores (here a repeated creation) is acknowledged with the rest."""
    tickets = consumer("ticket:created")
    ids = [new_object_id() for _ in range(30)]
    jetstream.publish_all([("ticket:created", ticket_payload(i, 0, title=f"t{n}"), None) for n, i in enumerate(ids)])
    jetstream.publish("ticket:created", ticket_payload(ids[0], 0, title="repeat"))

    assert process(jetstream, real("ticket:created"), tickets.fetch(31)) == [APPLIED] * 30 + [IGNORED]

    assert dict(Ticket.objects.values_list("id", "title")) == {i: f"t{n}" for n, i in enumerate(ids)}
    wait_until(tickets.settled, message="the acks")
    assert tickets.nothing_to_fetch()


def test_one_poison_message_never_holds_back_the_good_ones(jetstream, consumer, settings):
    settings.EVENT_MAX_DELIVERIES = 2
    tickets = consumer("ticket:created")
    good = [new_object_id() for _ in range(3)]
    poison_id = new_object_id()
    bad_json = b'{"id": "65f0c0ffee0000000000abcd", "version": 0,'
    bad_schema = b'{"id": "65f0c0ffee0000000000abcd", "version": 0, "title": "t", "price": -1, "userId": "u"}'
    acks = [
        jetstream.publish("ticket:created", ticket_payload(good[0], 0, title="g0")),
        jetstream.publish("ticket:created", bad_json),
        jetstream.publish("ticket:created", ticket_payload(poison_id, 0, title="poison")),
        jetstream.publish("ticket:created", ticket_payload(good[1], 0, title="g1")),
        jetstream.publish("ticket:created", bad_schema),
        jetstream.publish("ticket:created", ticket_payload(good[2], 0, title="g2")),
    ]
    listener = poisoned("ticket:created")

    # The batch's transaction fails: each good one is applied alone, the poison one waits its retry.
    outcomes = process(jetstream, listener, tickets.fetch(6))

    assert outcomes == [APPLIED, REJECTED, RETRYING, APPLIED, REJECTED, APPLIED]
    assert {t: replica(t) for t in good} == {good[0]: ("g0", 20, 0), good[1]: ("g1", 20, 0), good[2]: ("g2", 20, 0)}
    assert replica(poison_id) is None
    failed = dict(FailedEvent.objects.values_list("stream_sequence", "error"))
    assert failed == {
        acks[1].seq: failed[acks[1].seq],
        acks[4].seq: "ticket:created: price must be a finite number >= 0",
    }
    assert failed[acks[1].seq].startswith("payload is not valid UTF-8 JSON")

    # Its last delivery sets it aside too: nothing is redelivered forever.
    [again] = tickets.fetch(1)
    assert (again.metadata.sequence.stream, again.metadata.num_delivered) == (acks[2].seq, 2)
    assert process(jetstream, listener, [again]) == [REJECTED]

    assert FailedEvent.objects.get(stream_sequence=acks[2].seq).error == (
        "RuntimeError: cannot apply poison (after 2 deliveries)"
    )
    assert replica(poison_id) is None
    wait_until(tickets.settled, message="every message acked or terminated")
    assert tickets.nothing_to_fetch()
    assert tickets.info().delivered.consumer_seq == 7  # six messages, one of them twice


def test_an_unreachable_database_never_makes_a_batch_poison(jetstream, consumer, settings):
    settings.EVENT_MAX_DELIVERIES = 1

    def database_down(events) -> list[str]:
        raise OperationalError("connection refused")

    tickets = consumer("ticket:created")
    jetstream.publish_all([("ticket:created", ticket_payload(new_object_id()), None) for _ in range(3)])
    failing = Listener(Subject.TICKET_CREATED, real("ticket:created").handle, handle_batch=database_down)

    for delivery in (1, 2, 3):
        messages = tickets.fetch(3)
        assert {m.metadata.num_delivered for m in messages} == {delivery}
        assert process(jetstream, failing, messages) == [RETRYING] * 3

    assert not FailedEvent.objects.exists()
    assert not Ticket.objects.exists()
    assert tickets.info().num_ack_pending == 3  # all held back for the next delivery


def test_a_stop_before_the_batch_is_applied_hands_it_back(jetstream, consumer):
    tickets = consumer("ticket:created")
    ids = [new_object_id() for _ in range(3)]
    jetstream.publish_all([("ticket:created", ticket_payload(i), None) for i in ids])
    bad = jetstream.publish("ticket:created", b"not json")

    async def stopped() -> asyncio.Event:
        stop = asyncio.Event()
        stop.set()
        return stop

    stop = jetstream.call(stopped())
    assert process(jetstream, real("ticket:created"), tickets.fetch(4), stop) == [None, None, None, REJECTED]

    assert not Ticket.objects.exists()
    again = tickets.fetch(3)  # handed back without a delay
    assert {m.metadata.num_delivered for m in again} == {2}
    assert process(jetstream, real("ticket:created"), again) == [APPLIED] * 3
    assert set(Ticket.objects.values_list("id", flat=True)) == set(ids)
    assert FailedEvent.objects.get().stream_sequence == bad.seq
    wait_until(tickets.settled, message="the acks")


def test_listeners_without_a_batch_handler_go_one_at_a_time(jetstream, consumer):
    seen: list[str] = []
    on_created = real("ticket:created")

    def handle(event) -> str:
        seen.append(event.id)
        return on_created.handle(event)

    tickets = consumer("ticket:created")
    ids = [new_object_id() for _ in range(3)]
    jetstream.publish_all([("ticket:created", ticket_payload(i), None) for i in ids])

    outcomes = process(jetstream, Listener(Subject.TICKET_CREATED, handle), tickets.fetch(3))

    assert outcomes == [APPLIED] * 3
    assert sorted(seen) == sorted(ids)
    wait_until(tickets.settled, message="the acks")
