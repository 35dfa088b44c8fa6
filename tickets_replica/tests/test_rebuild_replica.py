"""`manage.py rebuild_replica` against a real nats-server: the replica restored from the stream, idempotently."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from core.ids import new_object_id
from messaging.events import Subject
from testsupport.testrun import ticket_payload
from testsupport.waiting import wait_until
from tickets_replica.models import Ticket

pytestmark = [pytest.mark.nats, pytest.mark.django_db(transaction=True)]


def rebuild(*args: str) -> str:
    out = StringIO()
    call_command("rebuild_replica", *args, stdout=out)
    return out.getvalue().strip()


def replica() -> dict[str, tuple]:
    return {t: (title, price, version) for t, title, price, version in Ticket.objects.values_list()}


@pytest.fixture
def published(jetstream) -> dict[str, tuple]:
    """Ticket events as the tickets service would send them, out of order, with repeats and garbage."""
    jetstream.ensure_streams()
    a, b, c = new_object_id(), new_object_id(), new_object_id()
    events = [
        ("ticket:created", ticket_payload(a, 0, title="a0", price=10)),
        ("ticket:updated", ticket_payload(a, 2, title="a2", price=12)),
        ("ticket:updated", ticket_payload(a, 1, title="a1", price=11)),
        ("ticket:created", ticket_payload(b, 0, title="b0", price=20)),
        ("ticket:created", ticket_payload(b, 0, title="b0 again", price=99)),
        ("ticket:updated", ticket_payload(c, 3, title="c3", price=33)),
        ("ticket:created", ticket_payload(c, 0, title="c0", price=30)),
        ("ticket:created", b'{"not": "a ticket"}'),
        ("order:cancelled", {"id": new_object_id(), "version": 1, "ticket": {"id": a}}),
    ]
    for subject, payload in events:
        jetstream.publish(subject, payload)
    return {a: ("a2", 12, 2), b: ("b0", 20, 0), c: ("c3", 33, 3)}


def test_rebuild_restores_a_wiped_replica_and_a_second_run_changes_nothing(published):
    assert rebuild() == "created 3, updated 0, unchanged 0 (8 ticket events read; 1 invalid, skipped)"
    assert replica() == published

    assert rebuild("--batch", "2") == "created 0, updated 0, unchanged 3 (8 ticket events read; 1 invalid, skipped)"
    assert replica() == published


def test_rebuild_repairs_stale_and_missing_tickets_and_leaves_good_ones(published):
    a, b, _missing = published
    Ticket.objects.create(id=a, title="stale", price=0, version=1)
    Ticket.objects.create(id=b, title="b0", price=20, version=0)

    assert rebuild() == "created 1, updated 1, unchanged 1 (8 ticket events read; 1 invalid, skipped)"

    assert replica() == published


def test_rebuild_while_the_worker_runs_gives_the_same_replica(published, run_worker, jetstream):
    run_worker()
    wait_until(lambda: replica() == published, message="the worker to apply the events")
    jetstream.wait_settled(Subject.TICKET_UPDATED)

    assert rebuild().startswith("created 0, updated 0, unchanged 3")
    assert replica() == published


def test_rebuild_of_an_empty_stream_reports_nothing(jetstream):
    jetstream.ensure_streams()

    assert rebuild() == "created 0, updated 0, unchanged 0 (0 ticket events read)"
    assert not Ticket.objects.exists()
