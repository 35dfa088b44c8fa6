"""One trace from a browser's request to the peers and back, as the real API server and worker export it over OTLP/HTTP."""

from __future__ import annotations

import pytest
import requests

from core.ids import new_object_id
from devtools.otlp_sink import OtlpSink, ReceivedSpan
from orders.models import Order
from testsupport.processes import Processes
from testsupport.service import start_api, start_worker
from testsupport.testrun import database_under_test_url, service_env_for_tests, ticket_payload
from testsupport.waiting import wait_until
from tickets_replica.models import Ticket
from web.tests.tracing_support import new_traceparent, parse_traceparent, publish_traced

pytestmark = pytest.mark.nats


@pytest.fixture
def sink():
    with OtlpSink() as running:
        yield running


@pytest.fixture
def processes(tmp_path):
    registry = Processes(tmp_path)
    yield registry
    registry.close()


def last_message(jetstream, subject: str):
    messages = jetstream.messages(subject)
    return messages[-1] if messages else None


def the_span(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, f"{name!r}: {[s.name for s in spans]}"
    return found[0]


def test_one_trace_holds_the_request_the_outbox_write_the_publish_and_the_consuming_spans(
    transactional_db, nats_server, jetstream, make_user, processes, sink, tmp_path
):
    # The standard variables only (service_env passes none of the shell's OTEL_* on); a short batch delay so
    # the spans arrive while the test waits.
    env = service_env_for_tests(
        database_url=database_under_test_url(),
        nats_url=nats_server.url,
        data_dir=tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    start_worker(processes, "worker", env)
    base = start_api(processes, "api", env, workers=1).url

    # The tickets service announces a ticket, in a trace of its own.
    ticket_id = new_object_id()
    tickets_traceparent, tickets_trace, tickets_span = new_traceparent()
    publish_traced(jetstream, "ticket:created", ticket_payload(ticket_id), tickets_traceparent)
    wait_until(lambda: Ticket.objects.filter(id=ticket_id).exists(), timeout=30, message="the replica")

    # The browser (through an instrumented ingress) reserves it.
    traceparent, trace_id, browser_span = new_traceparent()
    _, cookie = make_user()
    response = requests.post(
        f"{base}/api/orders",
        json={"ticketId": ticket_id},
        headers={"Cookie": cookie, "traceparent": traceparent},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    order_id = response.json()["id"]

    created = wait_until(lambda: last_message(jetstream, "order:created"), timeout=30, message="order:created")
    assert parse_traceparent(created.headers["traceparent"])[0] == trace_id

    # The expiration service, continuing the order's trace, says its time is up.
    expiration_span = new_traceparent()[2]
    expiration_traceparent = f"00-{trace_id}-{expiration_span}-01"
    publish_traced(jetstream, "expiration:complete", {"orderId": order_id}, expiration_traceparent)
    cancelled = wait_until(lambda: last_message(jetstream, "order:cancelled"), timeout=30, message="order:cancelled")
    assert parse_traceparent(cancelled.headers["traceparent"])[0] == trace_id
    assert Order.objects.get(id=order_id).status == "cancelled"

    wanted = {"POST /api/orders", "create order:created", "send order:created", "process expiration:complete"}
    wanted |= {"create order:cancelled", "send order:cancelled"}

    def whole_trace() -> list[ReceivedSpan] | None:
        spans = sink.trace(trace_id)
        return spans if wanted <= {s.name for s in spans} else None

    spans = wait_until(whole_trace, timeout=30, message=f"the spans {sorted(wanted)} at the receiver")
    assert {span.service for span in spans} == {"orders"}

    server = the_span(spans, "POST /api/orders")
    assert (server.kind, server.parent_span_id) == ("SERVER", browser_span)
    assert server.attributes["http.response.status_code"] == 201
    queries = [s for s in spans if s.kind == "CLIENT" and s.parent_span_id == server.span_id]
    assert any(q.attributes["db.query.text"].startswith("INSERT INTO orders_order") for q in queries), queries

    create = the_span(spans, "create order:created")
    send = the_span(spans, "send order:created")
    assert (create.kind, create.parent_span_id) == ("PRODUCER", server.span_id)
    assert (send.kind, send.parent_span_id) == ("PRODUCER", create.span_id)
    assert send.attributes["messaging.message.id"] == created.headers["Nats-Msg-Id"]
    assert created.headers["traceparent"] == f"00-{trace_id}-{send.span_id}-01"

    process = the_span(spans, "process expiration:complete")
    assert (process.kind, process.parent_span_id) == ("CONSUMER", expiration_span)
    cancel_create = the_span(spans, "create order:cancelled")
    cancel_send = the_span(spans, "send order:cancelled")
    assert cancel_create.parent_span_id == process.span_id
    assert cancel_send.parent_span_id == cancel_create.span_id
    assert cancelled.headers["traceparent"] == f"00-{trace_id}-{cancel_send.span_id}-01"

    # The tickets service's event joined the tickets service's trace.
    def replica_trace() -> list[ReceivedSpan] | None:
        spans = sink.trace(tickets_trace)
        return spans if "process ticket:created" in {s.name for s in spans} else None

    replica = wait_until(replica_trace, timeout=30, message="the ticket:created trace")
    process_ticket = the_span(replica, "process ticket:created")
    assert (process_ticket.kind, process_ticket.parent_span_id) == ("CONSUMER", tickets_span)
    assert any(s.kind == "CLIENT" and s.parent_span_id == process_ticket.span_id for s in replica)
