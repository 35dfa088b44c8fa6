"""A worker stopped mid-burst, killed or asked to: nothing lost, nothing applied twice.

What each outcome was is read from the replica, the consumers' state on the stream and the next
worker's own counters (orders_worker_events_total), as an operator would.
"""

from __future__ import annotations

import signal

import pytest
from django.db.models import Sum

from core.ids import new_object_id
from messaging.events import Subject
from messaging.models import FailedEvent
from messaging.worker import FETCH_BATCH
from testsupport.http import metric, scrape
from testsupport.testrun import ticket_payload
from testsupport.waiting import wait_until
from tickets_replica.models import Ticket

pytestmark = pytest.mark.nats


def versions_applied() -> int:
    """How many ticket:updated the replica reflects: each applies the ticket's next version."""
    return Ticket.objects.aggregate(v=Sum("version"))["v"] or 0


def applied_events() -> int:
    """How many ticket events the replica reflects: a creation each, plus each ticket's version."""
    return Ticket.objects.count() + versions_applied()


def ticket_burst(count: int, last_version: int) -> tuple[list[str], list[tuple[str, dict, None]]]:
    ticket_ids = [new_object_id() for _ in range(count)]
    events = [("ticket:created", ticket_payload(t, 0, title="v0"), None) for t in ticket_ids]
    events += [
        ("ticket:updated", ticket_payload(t, v, title=f"v{v}", price=v), None)
        for v in range(1, last_version + 1)
        for t in ticket_ids
    ]
    return ticket_ids, events


def outcomes(worker, subject: str) -> dict[str, float]:
    """The worker's count of each outcome of the subject's events, from its /metrics."""
    text = scrape(worker.metrics_port)
    return {
        outcome: metric(text, "orders_worker_events_total", subject=subject, outcome=outcome)
        for outcome in ("applied", "ignored", "rejected", "retrying")
    }


def test_a_worker_killed_mid_burst_loses_nothing_and_applies_nothing_twice(worker_process, jetstream):
    env = {"EVENT_ACK_WAIT_SECONDS": "2"}  # what the killed worker held comes back after 2 s
    # The burst waits on the stream before the worker starts: it is applied in batches, far faster
    # than a test could publish it, so this is the way to catch it under way.
    jetstream.ensure_streams()
    ticket_ids, events = ticket_burst(500, 4)
    updates = sum(subject == "ticket:updated" for subject, _, _ in events)
    jetstream.publish_all(events)

    first = worker_process(**env)
    wait_until(lambda: applied_events() >= 30, timeout=30, message="the burst to be under way")
    assert first.kill() == -signal.SIGKILL
    assert applied_events() < len(events), "the worker finished before it was killed: nothing was tested"
    # What the killed worker committed stays; what it committed but had not acknowledged comes again.
    updates_left = updates - versions_applied()

    second = worker_process(**env)
    wait_until(lambda: applied_events() == len(events), timeout=60, message="the replica to converge")
    # Every message settled, none held back, and none set aside.
    jetstream.wait_settled(Subject.TICKET_CREATED)
    jetstream.wait_settled(Subject.TICKET_UPDATED)

    assert set(Ticket.objects.values_list("id", "title", "version")) == {(t, "v4", 4) for t in ticket_ids}
    assert not FailedEvent.objects.filter(resolved_at__isnull=True).exists()
    # Counted on ticket:updated, whose consumer applies in stream order, one version after the other (the
    # two consumers run side by side, so many a ticket:created is rightly ignored after its update).
    counts = outcomes(second, "ticket:updated")
    assert counts["applied"] <= updates_left, "an update the killed worker had committed was applied again"
    # Only what the killed worker held (at most a fetched batch per consumer) came back as a repeat.
    assert counts["ignored"] <= 2 * FETCH_BATCH
    assert (counts["rejected"], counts["retrying"]) == (0, 0)


def test_sigterm_drains_and_exits_zero(worker_process, jetstream):
    env = {"EVENT_ACK_WAIT_SECONDS": "2"}
    first = worker_process(**env)
    ticket_ids, events = ticket_burst(2000, 0)

    jetstream.publish_all(events)
    wait_until(lambda: Ticket.objects.count() >= 10, timeout=30, message="the burst to be under way")
    first.signal(signal.SIGTERM)

    assert first.wait(timeout=15) == 0
    # What an operator reads while the worker stops.
    log = first.log()
    assert "stop requested (SIGTERM): draining" in log
    assert log.rstrip().endswith("worker stopped")
    assert "Traceback" not in log
    applied_by_first = Ticket.objects.count()
    # Drained: whatever the first worker applied, it also acknowledged; the next one repeats nothing.
    second = worker_process(**env)
    wait_until(lambda: Ticket.objects.count() == 2000, timeout=30, message="the rest of the burst")
    jetstream.wait_settled(Subject.TICKET_CREATED)
    assert outcomes(second, "ticket:created") == {
        "applied": 2000 - applied_by_first,
        "ignored": 0,
        "rejected": 0,
        "retrying": 0,
    }
    assert set(Ticket.objects.values_list("id", flat=True)) == set(ticket_ids)
