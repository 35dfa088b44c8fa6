"""The ticket replica: is a ticket reserved, and the tickets service's changes, newest version winning."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction
from django.utils import timezone

from core.ids import new_object_id
from messaging.order_status import OrderStatus
from orders.models import Order
from tickets_replica.models import Ticket
from tickets_replica.services import ReplicaOutcome, ticket_apply_update, ticket_create


def replica(ticket_id: str) -> tuple | None:
    return Ticket.objects.filter(id=ticket_id).values_list("title", "price", "version").first()


def add_order(ticket: Ticket, status: str) -> Order:
    return Order.objects.create(user_id="user-1", ticket=ticket, status=status, expires_at=timezone.now())


# --- Ticket.is_reserved -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_ticket_without_orders_is_not_reserved(make_ticket):
    assert make_ticket().is_reserved() is False


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "reserved"),
    [
        (OrderStatus.CREATED, True),
        (OrderStatus.AWAITING_PAYMENT, True),
        (OrderStatus.COMPLETE, True),
        (OrderStatus.CANCELLED, False),
    ],
)
def test_a_ticket_is_reserved_while_an_order_is_active(make_ticket, status, reserved):
    ticket = make_ticket()
    add_order(ticket, status)

    assert ticket.is_reserved() is reserved


@pytest.mark.django_db
def test_cancelled_orders_do_not_hide_an_active_one(make_ticket):
    ticket = make_ticket()
    add_order(ticket, OrderStatus.CANCELLED)
    add_order(ticket, OrderStatus.CANCELLED)
    assert ticket.is_reserved() is False

    add_order(ticket, OrderStatus.AWAITING_PAYMENT)

    assert ticket.is_reserved() is True


@pytest.mark.django_db
def test_another_tickets_order_does_not_reserve_this_one(make_ticket):
    ticket, other = make_ticket(), make_ticket()
    add_order(other, OrderStatus.CREATED)

    assert (ticket.is_reserved(), other.is_reserved()) == (False, True)


# --- ticket_create ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ticket_create_inserts_the_ticket():
    ticket_id = new_object_id()

    assert ticket_create(id=ticket_id, title="concert", price=10.5, version=0) is ReplicaOutcome.APPLIED
    assert replica(ticket_id) == ("concert", 10.5, 0)


@pytest.mark.django_db
def test_ticket_create_again_is_ignored_and_changes_nothing():
    ticket_id = new_object_id()
    ticket_create(id=ticket_id, title="concert", price=20, version=0)

    outcome = ticket_create(id=ticket_id, title="other", price=99, version=0)

    assert outcome is ReplicaOutcome.IGNORED
    assert replica(ticket_id) == ("concert", 20, 0)
    assert Ticket.objects.count() == 1


@pytest.mark.django_db
def test_ticket_create_again_keeps_the_surrounding_transaction_usable():
    ticket_id = new_object_id()

    with transaction.atomic():
        ticket_create(id=ticket_id, title="concert", price=20, version=0)
        assert ticket_create(id=ticket_id, title="concert", price=20, version=0) is ReplicaOutcome.IGNORED
        ticket_create(id=new_object_id(), title="second", price=5, version=0)

    assert Ticket.objects.count() == 2


# --- ticket_apply_update ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_next_version_is_applied(make_ticket):
    ticket = make_ticket(title="concert", price=20, version=0)

    outcome = ticket_apply_update(id=ticket.id, title="new title", price=25.5, version=1)

    assert outcome is ReplicaOutcome.APPLIED
    assert replica(ticket.id) == ("new title", 25.5, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("version", [0, 1, 2], ids=["much-older", "older", "same"])
def test_an_older_or_equal_version_is_ignored(make_ticket, version):
    ticket = make_ticket(title="concert", price=20, version=2)

    outcome = ticket_apply_update(id=ticket.id, title="stale", price=1, version=version)

    assert outcome is ReplicaOutcome.IGNORED
    assert replica(ticket.id) == ("concert", 20, 2)


@pytest.mark.django_db
@pytest.mark.parametrize("version", [2, 3, 10])
def test_a_newer_version_applies_at_once_even_after_a_gap(make_ticket, version):
    ticket = make_ticket(title="concert", price=20, version=0)

    outcome = ticket_apply_update(id=ticket.id, title="newest", price=1, version=version)

    assert outcome is ReplicaOutcome.APPLIED
    assert replica(ticket.id) == ("newest", 1, version)


@pytest.mark.django_db
@pytest.mark.parametrize("version", [0, 1, 5])
def test_an_update_of_a_ticket_not_created_yet_creates_it(version):
    ticket_id = new_object_id()

    assert ticket_apply_update(id=ticket_id, title="t", price=1, version=version) is ReplicaOutcome.APPLIED
    assert replica(ticket_id) == ("t", 1, version)


@pytest.mark.django_db
def test_a_creation_after_a_newer_update_changes_nothing():
    ticket_id = new_object_id()
    ticket_apply_update(id=ticket_id, title="v2", price=2, version=2)

    assert ticket_create(id=ticket_id, title="v0", price=0, version=0) is ReplicaOutcome.IGNORED
    assert replica(ticket_id) == ("v2", 2, 2)


@pytest.mark.django_db
def test_a_stale_copy_cannot_overwrite_a_newer_version(make_ticket):
    """Two workers read version 0; only the first conditional UPDATE counts."""
    ticket = make_ticket(title="v0", price=0, version=0)

    first = ticket_apply_update(id=ticket.id, title="first writer", price=1, version=1)
    second = ticket_apply_update(id=ticket.id, title="second writer", price=2, version=1)

    assert (first, second) == (ReplicaOutcome.APPLIED, ReplicaOutcome.IGNORED)
    assert replica(ticket.id) == ("first writer", 1, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_version_apply_it_once():
    """Real threads, real transactions: the UPDATE's row count decides who applied it."""
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"] in ("", ":memory:"):
        pytest.skip("needs a database file that several connections share")
    ticket_id = new_object_id()
    ticket_create(id=ticket_id, title="v0", price=0, version=0)
    workers = 10
    barrier = threading.Barrier(workers)

    def deliver(n: int) -> ReplicaOutcome:
        try:
            barrier.wait(timeout=30)
            return ticket_apply_update(id=ticket_id, title=f"writer {n}", price=n, version=1)
        finally:
            connection.close()

    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(deliver, range(workers)))

    assert sorted(o.value for o in outcomes) == ["applied"] + ["ignored"] * (workers - 1)
    winner = outcomes.index(ReplicaOutcome.APPLIED)
    assert replica(ticket_id) == (f"writer {winner}", winner, 1)
