"""The database dies (immediate shutdown) under traffic and comes back: 503s meanwhile, nothing lost after."""

from __future__ import annotations

import time
from collections import Counter

from messaging.events import Subject
from testsupport.waiting import wait_until

from .support import (
    SERVICE_UNAVAILABLE,
    Traffic,
    announce_tickets,
    assert_exactly_once,
    own_servers_scenario,
    publish_updates,
    record,
    unresolved_failed_events,
    updates_applied,
)

pytestmark = own_servers_scenario(timeout=600)

CREATORS = 4
TICKETS = 1500
UPDATED_DURING_OUTAGE = 200


def test_a_database_outage_is_503_meanwhile_and_loses_nothing(start_service, postgres_server, nats_server, scale):
    started = time.monotonic()
    db_url = postgres_server.create_database("orders")
    service = start_service(database_url=db_url, nats_url=nats_server.url)
    api, worker, jetstream = service.api, service.worker, service.jetstream

    tickets = announce_tickets(jetstream, db_url, TICKETS)
    updated = tickets[:UPDATED_DURING_OUTAGE]

    with Traffic(
        api.url, tickets, creators=CREATORS, probes={"readyz": f"{api.url}/readyz"}, probe_every=0.1
    ) as traffic:
        wait_until(lambda: traffic.created() >= 50, timeout=60, message="traffic before the outage")
        stopped_at = time.monotonic()
        postgres_server.stop("immediate")
        down_at = time.monotonic()
        # Ticket events keep coming while the database is down: the worker must hold them, not drop them.
        published = publish_updates(jetstream, updated)
        time.sleep(max(0.0, scale.db_outage_seconds - (time.monotonic() - down_at)))
        alive_during_outage = worker.alive()
        up_from = time.monotonic()
        postgres_server.start()
        restarted_at = time.monotonic()
        created_before_restart = traffic.created()
        wait_until(
            lambda: traffic.created() >= created_before_restart + 50, timeout=60, message="creates after the restart"
        )
    assert traffic.errors == []
    outage_seconds = restarted_at - stopped_at

    # Requests sent after the stop completed and answered before the restart began saw only the outage;
    # one sent during the outage and answered after the restart may have been served (201).
    sent_during = [a for a in traffic.creates if down_at <= a.started < up_from]
    during = [a for a in sent_during if a.ended <= up_from]
    readyz = traffic.probes["readyz"]
    probes_during = [a for a in readyz if a.started >= down_at and a.ended <= up_from]
    statuses = Counter(a.status for a in traffic.creates)

    # Nothing lost, nothing twice: every 201 is one order, every order one outbox row and one message.
    orders, on_stream = assert_exactly_once(jetstream, db_url, traffic.created_ids())
    # The updates published during the outage are applied once the database is back.
    wait_until(
        lambda: updates_applied(db_url) == UPDATED_DURING_OUTAGE,
        timeout=60,
        message="the updates held during the outage",
    )
    # Deliveries beyond one per message: what the worker handed back while the database was down.
    consumer = jetstream.consumer_info(Subject.TICKET_UPDATED)
    held = consumer.delivered.consumer_seq - len(jetstream.messages("ticket:updated"))
    record(
        "database-outage",
        outage_seconds=round(outage_seconds, 1),
        creates_sent=len(traffic.creates),
        creates_201=statuses[201],
        creates_by_status=dict(statuses),
        creates_sent_during_outage=len(sent_during),
        creates_answered_during_outage=len(during),
        answered_during_outage_by_status=dict(Counter(a.status for a in during)),
        readyz_during_outage=dict(Counter(a.status for a in probes_during)),
        orders_in_database=orders,
        order_created_on_stream=on_stream,
        ticket_updates_published_during_outage=published["published"],
        ticket_updates_applied_after=UPDATED_DURING_OUTAGE,
        ticket_updated_redeliveries=held,
        worker_log_database_unavailable=worker.log().count("database unavailable"),
        total_seconds=round(time.monotonic() - started, 1),
    )
    assert alive_during_outage and worker.alive()
    assert unresolved_failed_events(db_url) == 0
    assert held > 0, "the worker never met the outage: nothing was tested"

    # While the database is down: 503 in the error shape, never 500; the readiness probe says 503 too.
    assert len(during) >= CREATORS and len(probes_during) >= 2, "too few answers during the outage"
    assert {a.status for a in probes_during} == {503}
    assert set(statuses) <= {201, 503}, statuses
    assert [(a.status, a.body) for a in during if (a.status, a.body) != (503, SERVICE_UNAVAILABLE)] == []
    unexpected = [
        (a.status, a.body) for a in sent_during if a.status != 201 and (a.status, a.body) != (503, SERVICE_UNAVAILABLE)
    ]
    assert unexpected == []
    assert readyz[-1].status == 200
