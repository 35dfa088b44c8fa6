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


def test_ticket_created_again_changes_nothing_and_acks(run_worker, jetstream, make_ticket):
    ticket = make_ticket(title="concert", price=20, version=0)
    run_worker()

    jetstream.publish("ticket:created", ticket_payload(ticket.id, 0, title="other", price=99))

    info = jetstream.wait_settled(Subject.TICKET_CREATED)
    assert info.num_redelivered == 0
    assert replica(ticket.id) == ("concert", 20, 0)
    assert Ticket.objects.count() == 1


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


def test_ticket_updated_after_a_skipped_version_applies_at_once_and_the_older_one_is_ignored(
    run_worker, jetstream, make_ticket
):
    ticket = make_ticket(title="concert", price=20, version=0)
    run_worker()

    jetstream.publish("ticket:updated", ticket_payload(ticket.id, 2, title="v2", price=2))

    wait_until(lambda: replica(ticket.id)[2] == 2, message="version 2")
    assert replica(ticket.id) == ("v2", 2, 2)
    info = jetstream.wait_settled(Subject.TICKET_UPDATED)
    assert (info.num_redelivered, info.ack_floor.stream_seq) == (0, 1)

    # The skipped version arrives late: acked, and it changes nothing.
    jetstream.publish("ticket:updated", ticket_payload(ticket.id, 1, title="v1", price=1))

    info = wait_until(
        lambda: (i := jetstream.consumer_info(Subject.TICKET_UPDATED)).ack_floor.stream_seq == 2 and i,
        message="the ack of version 1",
    )
    assert (info.num_ack_pending, info.num_redelivered) == (0, 0)
    assert replica(ticket.id) == ("v2", 2, 2)


def test_ticket_updated_before_ticket_created_creates_it_and_the_creation_changes_nothing(run_worker, jetstream):
    run_worker()
    ticket_id = new_object_id()

    jetstream.publish("ticket:updated", ticket_payload(ticket_id, 1, title="v1"))
    wait_until(lambda: replica(ticket_id), message="the ticket, from its update")
    assert replica(ticket_id) == ("v1", 20, 1)

    jetstream.publish("ticket:created", ticket_payload(ticket_id, 0, title="v0"))

    info = jetstream.wait_settled(Subject.TICKET_CREATED)
    assert (info.delivered.stream_seq, info.num_redelivered) == (2, 0)
    assert replica(ticket_id) == ("v1", 20, 1)
    assert jetstream.wait_settled(Subject.TICKET_UPDATED).num_redelivered == 0


@pytest.mark.parametrize("old_version", [2, 3])
def test_ticket_updated_with_an_old_or_equal_version_is_acked_and_ignored(
    run_worker, jetstream, make_ticket, old_version
):
    ticket = make_ticket(title="current", price=30, version=3)
    run_worker()

    jetstream.publish("ticket:updated", ticket_payload(ticket.id, old_version, title="stale", price=1))

    info = jetstream.wait_settled(Subject.TICKET_UPDATED)
    assert info.num_redelivered == 0
    assert replica(ticket.id) == ("current", 30, 3)
