"""`ticket:created` and `ticket:updated` through the real worker and nats-server: replica and acks."""

from __future__ import annotations

import pytest

from core.ids import new_object_id
from messaging.events import Subject
from testsupport.testrun import ticket_payload
from testsupport.waiting import wait_until
from tickets_replica.models import Ticket

pytestmark = pytest.mark.nats


def replica(ticket_id: str) -> tuple | None:
    return Ticket.objects.filter(id=ticket_id).values_list("title", "price", "version").first()


def test_ticket_created_creates_and_saves_a_ticket_and_acks(run_worker, jetstream):
    run_worker()
    ticket_id = new_object_id()

    jetstream.publish("ticket:created", ticket_payload(ticket_id, 0, title="concert", price=20.5))

    wait_until(lambda: replica(ticket_id), message="the replica ticket")
    assert replica(ticket_id) == ("concert", 20.5, 0)
    info = jetstream.wait_settled(Subject.TICKET_CREATED)
    assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)


def test_ticket_updated_finds_updates_and_saves_a_ticket_and_acks(run_worker, jetstream, make_ticket):
    ticket = make_ticket(title="concert", price=20, version=0)
    run_worker()

    jetstream.publish("ticket:updated", ticket_payload(ticket.id, 1, title="new concert", price=999))

    wait_until(lambda: replica(ticket.id)[2] == 1, message="version 1")
    assert replica(ticket.id) == ("new concert", 999, 1)
    info = jetstream.wait_settled(Subject.TICKET_UPDATED)
    assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)


def test_ticket_updated_with_an_order_id_is_applied(run_worker, jetstream, make_ticket):
    ticket = make_ticket(version=4)
    run_worker()

    jetstream.publish("ticket:updated", {**ticket_payload(ticket.id, 5, title="reserved"), "orderId": new_object_id()})

    wait_until(lambda: replica(ticket.id)[2] == 5, message="version 5")
    assert replica(ticket.id)[0] == "reserved"
