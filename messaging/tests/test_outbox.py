"""The transactional outbox and its relay: each event reaches the stream once, with its outbox id."""

from __future__ import annotations

import nats.errors
import pytest
from django.db import transaction

from messaging.events import TicketRef
from messaging.models import OutboxEvent
from messaging.outbox import outbox_enqueue
from messaging.relay import relay_once
from orders.models import Order
from orders.services import order_cancel, order_create
from testsupport.waiting import wait_until


def all_sent() -> bool:
    return OutboxEvent.objects.exists() and not OutboxEvent.objects.filter(sent_at__isnull=True).exists()


def test_outbox_enqueue_refuses_to_run_outside_a_transaction(transactional_db):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        outbox_enqueue(event=TicketRef(id="65f0c0ffee0000000000abcd"))
    assert not OutboxEvent.objects.exists()


def test_the_outbox_row_written_by_sql_is_the_row_the_orm_writes(db, monkeypatch):
    """The hand-written INSERT (SQLite, PostgreSQL) against the ORM's create (the path MongoDB takes)."""
    from messaging import outbox
    from messaging.events import OrderCancelled

    event = OrderCancelled(id="65f0c0ffee0000000000abcd", version=2, ticket={"id": "65f0c0ffee0000000000dcba"})
    with transaction.atomic():
        by_sql = outbox_enqueue(event=event)
        monkeypatch.setattr(outbox, "SQL_VENDORS", frozenset())
        by_orm = outbox_enqueue(event=event)

    fields = ["subject", "payload", "sent_at", "trace_context"]
    stored = {row["id"]: row for row in OutboxEvent.objects.values("id", "created_at", *fields)}
    assert {name: stored[by_sql.id][name] for name in fields} == {name: stored[by_orm.id][name] for name in fields}
    assert stored[by_sql.id]["payload"] == event.to_payload()
    assert abs(stored[by_sql.id]["created_at"] - stored[by_orm.id]["created_at"]).total_seconds() < 5
    # What the caller gets back is the row as stored.
    assert (by_sql.subject, by_sql.payload, by_sql.sent_at) == (event.subject.value, event.to_payload(), None)
    assert OutboxEvent.objects.filter(payload__id=event.id).count() == 2  # a JSON document, not a string


def test_an_event_is_not_written_when_its_change_rolls_back(db, make_ticket):
    ticket = make_ticket()

    with pytest.raises(ZeroDivisionError), transaction.atomic():
        order_create(user_id="u1", ticket_id=ticket.id)
        1 / 0  # noqa: B018 (a failure after the service, in the same transaction)

    assert not Order.objects.exists()
    assert not OutboxEvent.objects.exists()


@pytest.mark.nats
def test_order_created_and_cancelled_reach_the_stream_once_with_their_outbox_ids(
    run_worker, jetstream, signed_in, make_ticket
):
    ticket = make_ticket(title="concert", price=20.5)
    run_worker()

    created = signed_in.post("/api/orders", {"ticketId": ticket.id}, format="json")
    assert created.status_code == 201
    order = created.json()
    assert signed_in.delete(f"/api/orders/{order['id']}").status_code == 204
    assert signed_in.delete(f"/api/orders/{order['id']}").status_code == 204  # already cancelled: no event

    wait_until(all_sent, message="the outbox to be relayed")
    rows = {row.subject: row for row in OutboxEvent.objects.all()}
    assert sorted(rows) == ["order:cancelled", "order:created"]
    [on_created] = jetstream.messages("order:created")
    [on_cancelled] = jetstream.messages("order:cancelled")
    assert on_created.headers["Nats-Msg-Id"] == rows["order:created"].id
    assert on_cancelled.headers["Nats-Msg-Id"] == rows["order:cancelled"].id
    assert on_created.seq < on_cancelled.seq
    assert jetstream.payloads("order:created") == [
        {
            "id": order["id"],
            "version": 0,
            "status": "created",
            "userId": signed_in.user_id,
            "expiresAt": order["expiresAt"],
            "ticket": {"id": ticket.id, "price": 20.5},
        }
    ]
    assert jetstream.payloads("order:cancelled") == [{"id": order["id"], "version": 1, "ticket": {"id": ticket.id}}]


@pytest.mark.nats
def test_a_resend_after_a_crash_between_publish_and_mark_is_dropped(transactional_db, jetstream, make_ticket):
    orders = [order_create(user_id="u1", ticket_id=make_ticket().id) for _ in range(3)]
    order_cancel(order_id=orders[0].id)
    jetstream.ensure_streams()

    assert jetstream.call(relay_once(jetstream.js)) == 4
    assert all_sent()
    # The relay died after publishing, before its UPDATE ... SET sent_at committed.
    OutboxEvent.objects.update(sent_at=None)
    assert jetstream.call(relay_once(jetstream.js)) == 4

    assert all_sent()
    assert jetstream.call(relay_once(jetstream.js)) == 0
    ids = sorted(OutboxEvent.objects.values_list("id", flat=True))
    on_stream = jetstream.messages("order:created") + jetstream.messages("order:cancelled")
    assert sorted(m.headers["Nats-Msg-Id"] for m in on_stream) == ids
    assert sorted(p["id"] for p in jetstream.payloads("order:created")) == sorted(o.id for o in orders)
    assert jetstream.stream_info("ticketing").state.messages == 4


class FailingFrom:
    """The real JetStream context, whose publishes fail from the n-th on (NATS went away mid-batch)."""

    def __init__(self, js, *, succeed: int) -> None:
        self.js = js
        self.succeed = succeed

    async def publish(self, *args, **kwargs):
        if self.succeed == 0:
            raise nats.errors.TimeoutError
        self.succeed -= 1
        return await self.js.publish(*args, **kwargs)


@pytest.mark.nats
def test_a_publish_failure_mid_batch_marks_only_what_was_published(transactional_db, jetstream, make_ticket):
    orders = [order_create(user_id="u1", ticket_id=make_ticket().id) for _ in range(4)]
    jetstream.ensure_streams()

    with pytest.raises(nats.errors.TimeoutError):
        jetstream.call(relay_once(FailingFrom(jetstream.js, succeed=2)))

    assert [row.sent_at is not None for row in OutboxEvent.objects.order_by("created_at", "id")] == [
        True,
        True,
        False,
        False,
    ]
    assert [p["id"] for p in jetstream.payloads("order:created")] == [o.id for o in orders[:2]]
    assert jetstream.call(relay_once(jetstream.js)) == 2
    assert [p["id"] for p in jetstream.payloads("order:created")] == [o.id for o in orders]
    assert all_sent()
