"""Trace context over NATS: the relay sends each row's, the listeners continue each message's, on a real nats-server."""

from __future__ import annotations

import json

import nats.js.errors
import pytest
from django.core.management import CommandError, call_command
from opentelemetry.trace import SpanKind, StatusCode

from core import tracing
from core.ids import new_object_id
from messaging.events import OrderCreated
from messaging.models import OutboxEvent
from messaging.relay import relay_once
from orders.models import Order
from orders.services import order_create
from testsupport.testrun import ticket_payload
from testsupport.waiting import wait_until
from web.tests.tracing_support import (
    hex_ids,
    new_traceparent,
    one,
    parse_traceparent,
    publish_traced,
    recording_spans,
)

pytestmark = pytest.mark.nats


def order_created_payload() -> dict:
    """A whole `order:created`, as the service publishes one (every published event must fit the document)."""
    return OrderCreated(
        id=new_object_id(),
        version=0,
        status="created",
        userId="u1",
        expiresAt="2026-11-25T10:15:00.000Z",
        ticket={"id": new_object_id(), "price": 20},
    ).to_payload()


def relayed(jetstream, subject: str) -> list:
    """Relay what is pending; the subject's messages on the stream."""
    jetstream.ensure_streams()
    jetstream.call(relay_once(jetstream.js))
    return jetstream.messages(subject)


def test_the_relay_sends_the_rows_trace_context_beside_nats_msg_id(transactional_db, jetstream):
    traceparent, _, _ = new_traceparent()
    traced = OutboxEvent.objects.create(
        subject="order:created",
        payload=order_created_payload(),
        trace_context={"traceparent": traceparent, "tracestate": "a=1"},
    )
    untraced = OutboxEvent.objects.create(subject="order:created", payload=order_created_payload())

    headers = {m.headers["Nats-Msg-Id"]: m.headers for m in relayed(jetstream, "order:created")}

    assert headers == {
        traced.id: {"Nats-Msg-Id": traced.id, "traceparent": traceparent, "tracestate": "a=1"},
        untraced.id: {"Nats-Msg-Id": untraced.id},
    }


def test_with_an_sdk_the_publish_is_a_span_of_the_rows_trace_and_the_message_its_child(transactional_db, jetstream):
    traceparent, trace_id, writer_span = new_traceparent()
    row = OutboxEvent.objects.create(
        subject="order:created", payload=order_created_payload(), trace_context={"traceparent": traceparent}
    )

    with recording_spans() as exporter:
        [message] = relayed(jetstream, "order:created")

    send = one(exporter.get_finished_spans(), "send order:created")
    assert send.kind is SpanKind.PRODUCER
    assert hex_ids(send)[::2] == (trace_id, writer_span)
    assert send.attributes["messaging.message.id"] == row.id
    assert message.headers["traceparent"] == f"00-{trace_id}-{hex_ids(send)[1]}-01"


def test_a_refused_publish_marks_its_span_failed(transactional_db, jetstream):
    traceparent, trace_id, _ = new_traceparent()
    OutboxEvent.objects.create(
        subject="order:created", payload=order_created_payload(), trace_context={"traceparent": traceparent}
    )
    jetstream.ensure_streams()

    class Refusing:
        async def publish(self, *args, **kwargs):
            raise nats.js.errors.APIError(code=503, description="refused for the test")

    with recording_spans() as exporter, pytest.raises(nats.js.errors.APIError):
        jetstream.call(relay_once(Refusing()))
    send = one(exporter.get_finished_spans(), "send order:created")
    assert (hex_ids(send)[0], send.status.status_code) == (trace_id, StatusCode.ERROR)


def test_without_an_sdk_a_requests_trace_id_reaches_its_event_on_the_stream(
    transactional_db, jetstream, signed_in, make_ticket
):
    assert not tracing.recording()
    traceparent, trace_id, caller_span = new_traceparent()
    response = signed_in.post(
        "/api/orders", {"ticketId": make_ticket().id}, format="json", HTTP_TRACEPARENT=traceparent
    )
    assert response.status_code == 201

    [message] = relayed(jetstream, "order:created")

    assert message.headers["Nats-Msg-Id"] == OutboxEvent.objects.get().id
    assert parse_traceparent(message.headers["traceparent"]) == (trace_id, caller_span)


def cancelled_by_expiration(run_worker, jetstream, make_ticket, traceparent: str) -> dict:
    """A peer's expiration:complete (carrying `traceparent`) cancels an order: the order:cancelled's headers."""
    order = order_create(user_id=new_object_id(), ticket_id=make_ticket().id)
    run_worker()
    publish_traced(jetstream, "expiration:complete", {"orderId": order.id}, traceparent)
    wait_until(lambda: Order.objects.get(id=order.id).status == "cancelled", message="the order to be cancelled")
    wait_until(lambda: not OutboxEvent.objects.filter(sent_at__isnull=True).exists(), message="the relay")
    [message] = jetstream.messages("order:cancelled")
    return message.headers


def test_without_an_sdk_an_event_a_message_causes_carries_the_messages_trace_id(run_worker, jetstream, make_ticket):
    traceparent, trace_id, peer_span = new_traceparent()

    headers = cancelled_by_expiration(run_worker, jetstream, make_ticket, traceparent)

    assert parse_traceparent(headers["traceparent"]) == (trace_id, peer_span)


def test_a_listener_continues_the_messages_trace_into_its_queries_and_the_events_it_causes(
    run_worker, jetstream, make_ticket
):
    traceparent, trace_id, peer_span = new_traceparent()
    with recording_spans() as exporter:
        headers = cancelled_by_expiration(run_worker, jetstream, make_ticket, traceparent)
        spans = [s for s in exporter.get_finished_spans() if hex_ids(s)[0] == trace_id]

    process = one(spans, "process expiration:complete")
    assert process.kind is SpanKind.CONSUMER
    assert hex_ids(process)[2] == peer_span
    assert process.attributes["messaging.destination.name"] == "expiration:complete"
    assert (
        process.attributes["messaging.message.id"]
        == jetstream.messages("expiration:complete")[0].headers["Nats-Msg-Id"]
    )
    queries = [s for s in spans if s.kind is SpanKind.CLIENT and hex_ids(s)[2] == hex_ids(process)[1]]
    assert any(q.attributes["db.query.text"].startswith("UPDATE") for q in queries)
    create = one(spans, "create order:cancelled")
    assert hex_ids(create)[2] == hex_ids(process)[1]
    send = one(spans, "send order:cancelled")
    assert hex_ids(send)[2] == hex_ids(create)[1]
    assert headers["traceparent"] == f"00-{trace_id}-{hex_ids(send)[1]}-01"


@pytest.mark.parametrize("count", [1, 3])
def test_each_message_of_a_batch_joins_its_peers_trace(run_worker, jetstream, count):
    jetstream.ensure_streams()
    sent = [new_traceparent() for _ in range(count)]
    for traceparent, _, _ in sent:  # on the stream before the worker starts: its first fetch takes them all
        publish_traced(jetstream, "ticket:created", ticket_payload(new_object_id()), traceparent)

    with recording_spans() as exporter:
        run_worker()
        jetstream.wait_settled("ticket:created")
        recorded = exporter.get_finished_spans()
    spans = [s for s in recorded if s.name == "process ticket:created"]

    for _, trace_id, peer_span in sent:
        [mine] = [s for s in spans if hex_ids(s)[0] == trace_id]
        assert (mine.kind, hex_ids(mine)[2]) == (SpanKind.CONSUMER, peer_span)
    if count == 1:
        assert len(spans) == 1
        return
    [batch] = [s for s in spans if s.parent is None]
    assert batch.attributes["messaging.batch.message_count"] == count
    assert {f"{link.context.trace_id:032x}" for link in batch.links} == {trace_id for _, trace_id, _ in sent}
    assert len(spans) == count + 1
    assert any(s.kind is SpanKind.CLIENT and s.parent.span_id == batch.context.span_id for s in recorded)
    for span in spans:
        if span is not batch:
            assert [link.context.span_id for link in span.links] == [batch.context.span_id]


def test_publish_event_sends_a_peers_traceparent(transactional_db, jetstream):
    traceparent, _, _ = new_traceparent()
    call_command(
        "publish_event", "expiration:complete", json.dumps({"orderId": new_object_id()}), "--traceparent", traceparent
    )
    [message] = jetstream.messages("expiration:complete")
    assert message.headers["traceparent"] == traceparent
    with pytest.raises(CommandError):
        call_command("publish_event", "expiration:complete", '{"orderId": "x"}', "--raw", "--traceparent", "nope")
