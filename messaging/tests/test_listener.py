"""`process_message`, the worker's unit of work, on real messages from a real pull consumer."""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError

from core.ids import new_object_id
from messaging.events import Subject
from messaging.listener import Listener, Rejected, process_message, registered_listeners
from messaging.models import FailedEvent
from testsupport.testrun import ticket_payload
from testsupport.waiting import wait_until
from tickets_replica.models import Ticket

pytestmark = [pytest.mark.nats, pytest.mark.django_db(transaction=True)]


def listener(subject: str) -> Listener:
    return registered_listeners()[Subject(subject)]


def process(jetstream, listener: Listener, msg) -> str:
    return jetstream.call(process_message(listener, msg))


def raising(exc: BaseException) -> Listener:
    """A ticket:created listener whose handler raises `exc`."""

    def handle(event) -> str:
        raise exc

    return Listener(Subject.TICKET_CREATED, handle)


def test_an_applied_message_is_acked(jetstream, consumer):
    ticket_id = new_object_id()
    tickets = consumer("ticket:created")
    jetstream.publish("ticket:created", ticket_payload(ticket_id, 0, title="concert"))

    assert process(jetstream, listener("ticket:created"), tickets.next()) == "applied"

    assert Ticket.objects.get(id=ticket_id).title == "concert"
    wait_until(tickets.settled, message="the ack")
    assert tickets.nothing_to_fetch()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b'{"id": "65f0c0ffee0000000000abcd", "version": 0,', "payload is not valid UTF-8 JSON"),
        (b"\xff\xfe not utf-8", "payload is not valid UTF-8 JSON"),
        (b'{"id": "65f0c0ffee0000000000abcd", "version": 0, "title": "t", "userId": "u"}', "price is required"),
        (b'{"id": "nope", "version": 0, "title": "t", "price": 1, "userId": "u"}', "id must be a 24-hex id"),
    ],
)
def test_an_invalid_message_is_recorded_and_terminated(jetstream, consumer, data, error):
    tickets = consumer("ticket:created")
    ack = jetstream.publish("ticket:created", data)

    assert process(jetstream, listener("ticket:created"), tickets.next()) == "rejected"

    failed = FailedEvent.objects.get()
    assert (failed.subject, failed.stream, failed.stream_sequence) == ("ticket:created", ack.stream, ack.seq)
    assert failed.payload == data.decode("utf-8", errors="replace")
    assert error in failed.error
    assert (failed.delivery_count, failed.resolved_at) == (1, None)
    wait_until(tickets.settled, message="the termination")
    assert tickets.nothing_to_fetch()
    assert not Ticket.objects.exists()


def test_a_wait_shown_to_an_operator_is_resolved_when_the_event_applies(jetstream, consumer, make_ticket, settings):
    """A `waiting: …` row left by a worker that still waited for versions clears once the event applies."""
    settings.EVENT_MAX_DELIVERIES = 1
    ticket = make_ticket(title="v0", version=0)
    updates = consumer("ticket:updated")
    ack = jetstream.publish("ticket:updated", ticket_payload(ticket.id, 2, title="v2"))
    jetstream.call(updates.next().nak())
    FailedEvent.objects.create(
        subject="ticket:updated", stream=ack.stream, stream_sequence=ack.seq, payload="{}", error="waiting: …"
    )

    again = updates.next()
    assert again.metadata.num_delivered == 2
    assert process(jetstream, listener("ticket:updated"), again) == "applied"

    assert Ticket.objects.get(id=ticket.id).title == "v2"
    assert FailedEvent.objects.get().resolved_at is not None
    wait_until(updates.settled, message="the ack")


@pytest.mark.parametrize(
    ("subject", "payload", "error"),
    [
        ("expiration:complete", {"orderId": "65f0c0ffee0000000000abcd"}, "RetryLater: order 65f0c0ffee0000000000abcd"),
        (
            "payment:created",
            {"id": "65f0c0ffee0000000000aaaa", "orderId": "65f0c0ffee0000000000abcd", "stripeId": "ch_1"},
            "RetryLater: order 65f0c0ffee0000000000abcd",
        ),
    ],
)
def test_an_unknown_order_is_retried_then_set_aside(jetstream, consumer, settings, subject, payload, error):
    """The order may not be replicated yet: redelivered after a growing delay, set aside after the last."""
    settings.EVENT_MAX_DELIVERIES = 3
    settings.EVENT_RETRY_BASE_SECONDS, settings.EVENT_RETRY_MAX_SECONDS = 0.4, 0.6
    messages = consumer(subject)
    jetstream.publish(subject, payload)

    msg = messages.next()
    for delay in (0.4, 0.6):  # the base, then doubled up to the cap
        assert process(jetstream, listener(subject), msg) == "retrying"
        naked = time.monotonic()
        msg = messages.next()
        assert time.monotonic() - naked >= delay - 0.05, "redelivered before its backoff"
    assert not FailedEvent.objects.exists()
    assert process(jetstream, listener(subject), msg) == "rejected"

    failed = FailedEvent.objects.get()
    assert failed.error == f"{error} does not exist (after 3 deliveries)"
    assert failed.delivery_count == 3
    wait_until(messages.settled, message="the termination")
    assert messages.nothing_to_fetch()


def test_an_unexpected_error_is_retried_then_set_aside(jetstream, consumer, settings):
    settings.EVENT_MAX_DELIVERIES = 2
    failing = raising(RuntimeError("boom"))
    tickets = consumer("ticket:created")
    jetstream.publish("ticket:created", ticket_payload(new_object_id()))

    assert process(jetstream, failing, tickets.next()) == "retrying"
    assert process(jetstream, failing, tickets.next()) == "rejected"

    assert FailedEvent.objects.get().error == "RuntimeError: boom (after 2 deliveries)"
    wait_until(tickets.settled, message="the termination")


def test_a_rejected_event_is_set_aside_at_once(jetstream, consumer):
    tickets = consumer("ticket:created")
    jetstream.publish("ticket:created", ticket_payload(new_object_id()))

    assert process(jetstream, raising(Rejected("never")), tickets.next()) == "rejected"

    assert (FailedEvent.objects.get().error, FailedEvent.objects.get().delivery_count) == ("never", 1)
    wait_until(tickets.settled, message="the termination")


def test_database_errors_never_make_a_message_poison(jetstream, consumer, settings):
    settings.EVENT_MAX_DELIVERIES = 2
    failing = raising(OperationalError("connection refused"))
    tickets = consumer("ticket:created")
    jetstream.publish("ticket:created", ticket_payload(new_object_id()))

    for delivery in (1, 2, 3, 4):
        msg = tickets.next()
        assert msg.metadata.num_delivered == delivery
        assert process(jetstream, failing, msg) == "retrying"

    assert not FailedEvent.objects.exists()
    assert tickets.info().num_ack_pending == 1  # still there for the next delivery


def test_a_handler_that_fails_halfway_leaves_nothing_behind(jetstream, consumer, settings):
    """The handler runs in one transaction: a failure after a write rolls the write back."""
    ticket_id = new_object_id()

    def half_done(event) -> str:
        Ticket.objects.create(id=event.id, title=event.title, price=event.price, version=0)
        raise RuntimeError("crash after the first write")

    tickets = consumer("ticket:created")
    jetstream.publish("ticket:created", ticket_payload(ticket_id))

    assert process(jetstream, Listener(Subject.TICKET_CREATED, half_done), tickets.next()) == "retrying"

    assert not Ticket.objects.filter(id=ticket_id).exists()
    assert process(jetstream, listener("ticket:created"), tickets.next()) == "applied"
    assert Ticket.objects.filter(id=ticket_id).exists()
