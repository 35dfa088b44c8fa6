"""`ticket:created` and `ticket:updated` through the real worker and nats-server: replica and acks."""

from __future__ import annotations

import pytest

from common.ids import new_object_id
from messaging.events import Subject
from messaging.tests.harness import ticket_payload, wait_until
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


def test_ticket_updated_does_not_ack_when_a_version_is_skipped(run_worker, jetstream, make_ticket):
    ticket = make_ticket(title="concert", price=20, version=0)
    run_worker()

    jetstream.publish("ticket:updated", ticket_payload(ticket.id, 2, title="v2", price=2))

    # Redelivered (after a nak with a delay) and still not acknowledged; the replica is untouched.
    info = wait_until(
        lambda: (i := jetstream.consumer_info(Subject.TICKET_UPDATED)).num_redelivered >= 1 and i,
        message="the redelivery of version 2",
    )
    assert info.num_ack_pending == 1
    assert info.ack_floor.stream_seq == 0
    assert replica(ticket.id) == ("concert", 20, 0)

    # The missing version arrives: both apply, in order, and both are acknowledged.
    jetstream.publish("ticket:updated", ticket_payload(ticket.id, 1, title="v1", price=1))

    wait_until(lambda: replica(ticket.id)[2] == 2, message="version 2")
    assert replica(ticket.id) == ("v2", 2, 2)
    assert jetstream.wait_settled(Subject.TICKET_UPDATED).num_ack_pending == 0


def test_ticket_updated_before_ticket_created_waits_for_it(run_worker, jetstream):
    run_worker()
    ticket_id = new_object_id()

    jetstream.publish("ticket:updated", ticket_payload(ticket_id, 1, title="v1"))
    wait_until(lambda: jetstream.consumer_info(Subject.TICKET_UPDATED).num_redelivered >= 1, message="a redelivery")
    assert replica(ticket_id) is None

    jetstream.publish("ticket:created", ticket_payload(ticket_id, 0, title="v0"))

    wait_until(lambda: (replica(ticket_id) or ("", 0, 0))[2] == 1, message="version 1")
    assert replica(ticket_id) == ("v1", 20, 1)
    jetstream.wait_settled(Subject.TICKET_UPDATED)


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
