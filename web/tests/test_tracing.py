"""Traces in the API: OTEL_* configuration, and an incoming traceparent through the request, its queries and its outbox row."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.http import HttpResponse
from opentelemetry.trace import SpanKind, StatusCode

from core import tracing
from messaging.models import OutboxEvent
from web.tests.tracing_support import hex_ids, new_traceparent, one, parse_traceparent, recording_spans

ENDPOINT = "http://127.0.0.1:4318"


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console, otlp,console"}, ["console", "otlp"]),
        ({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "x"}, []),
    ],
)
def test_exporters_come_from_the_standard_variables_and_nothing_is_exported_by_default(environ, exporters):
    assert tracing.exporter_names(environ) == exporters


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
)
def test_an_exporter_that_is_not_installed_is_refused_at_start(environ):
    with pytest.raises(ImproperlyConfigured):
        if tracing.exporter_names(environ):
            tracing.configure_tracing(environ)


# What a freshly started process of the service has installed, from its environment alone.
PROBE = """
import json, django
django.setup()
from opentelemetry import trace
from core import tracing
provider = trace.get_tracer_provider()
resource = getattr(provider, "resource", None)
print(json.dumps({"recording": tracing.recording(), "provider": type(provider).__name__,
                  "service": resource.attributes.get("service.name") if resource else None}))
"""


@pytest.mark.parametrize(
    ("environ", "installed"),
    [
        ({}, {"recording": False, "provider": "ProxyTracerProvider", "service": None}),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT},
            {"recording": True, "provider": "TracerProvider", "service": "orders"},
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SERVICE_NAME": "orders-eu"},
            {"recording": True, "provider": "TracerProvider", "service": "orders-eu"},
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "true"},
            {"recording": False, "provider": "ProxyTracerProvider", "service": None},
        ),
    ],
)
def test_a_process_installs_the_sdk_only_when_an_exporter_is_configured(environ, installed):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(environ, DJANGO_SETTINGS_MODULE="ticketing_orders.settings_test")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == installed


def test_route_templates_name_spans_without_ids():
    assert tracing.route_template(r"^api/orders/?$") == "/api/orders"
    assert tracing.route_template(r"^api/orders/(?P<order_id>[^/]+)/?$") == "/api/orders/{order_id}"
    assert (
        tracing.route_template("api/orders/admin/<path:object_id>/change/") == "/api/orders/admin/{object_id}/change/"
    )


def descendants(spans, root) -> list:
    """Every span below `root` (children, their children, ...)."""
    by_parent: dict[str, list] = {}
    for span in spans:
        by_parent.setdefault(hex_ids(span)[2], []).append(span)
    found, frontier = [], [hex_ids(root)[1]]
    while frontier:
        for child in by_parent.get(frontier.pop(), []):
            found.append(child)
            frontier.append(hex_ids(child)[1])
    return found


def test_a_traceparent_continues_into_the_request_span_its_queries_and_the_outbox_row(signed_in, make_ticket):
    ticket = make_ticket()
    traceparent, trace_id, caller_span = new_traceparent()
    with recording_spans() as exporter:
        response = signed_in.post(
            "/api/orders",
            {"ticketId": ticket.id},
            format="json",
            HTTP_TRACEPARENT=traceparent,
            HTTP_TRACESTATE="peer=1",
        )
    assert response.status_code == 201
    spans = exporter.get_finished_spans()
    assert {hex_ids(span)[0] for span in spans} == {trace_id}

    server = one(spans, "POST /api/orders")
    assert server.kind is SpanKind.SERVER
    assert hex_ids(server)[2] == caller_span
    assert server.parent.is_remote
    assert server.attributes["http.route"] == "/api/orders"
    assert server.attributes["http.response.status_code"] == 201

    below = descendants(spans, server)
    assert set(below) == set(spans) - {server}
    queries = [span for span in below if span.kind is SpanKind.CLIENT]
    assert {span.attributes["db.system.name"] for span in queries} == {connection.vendor}
    assert any("tickets_replica_ticket" in span.attributes["db.query.text"] for span in queries)
    assert any(span.attributes["db.query.text"].startswith("INSERT INTO orders_order") for span in queries)
    query_ids = {span.context.span_id for span in queries}
    assert not [span for span in queries if span.parent.span_id in query_ids], "a statement traced twice"
    assert one(queries, "SELECT tickets_replica_ticket").attributes["db.collection.name"] == "tickets_replica_ticket"

    create = one(spans, "create order:created")
    assert (create.kind, hex_ids(create)[2]) == (SpanKind.PRODUCER, hex_ids(server)[1])
    [outbox_insert] = [span for span in queries if span.parent.span_id == create.context.span_id]
    assert "messaging_outboxevent" in outbox_insert.attributes["db.query.text"]

    row = OutboxEvent.objects.get(subject="order:created")
    assert create.attributes["messaging.message.id"] == row.id
    assert row.trace_context == {"traceparent": f"00-{trace_id}-{hex_ids(create)[1]}-01", "tracestate": "peer=1"}


def test_without_an_sdk_the_callers_context_still_reaches_the_outbox_row(signed_in, make_ticket):
    assert not tracing.recording()
    traceparent, trace_id, caller_span = new_traceparent()
    response = signed_in.post(
        "/api/orders", {"ticketId": make_ticket().id}, format="json", HTTP_TRACEPARENT=traceparent
    )
    assert response.status_code == 201
    row = OutboxEvent.objects.get(subject="order:created")
    # Nothing recorded, so no span of ours in between: the caller's own span is the event's parent.
    assert row.trace_context == {"traceparent": traceparent}
    assert parse_traceparent(row.trace_context["traceparent"]) == (trace_id, caller_span)


def test_a_caller_that_sampled_its_trace_out_is_not_recorded_but_its_trace_id_still_flows(signed_in, make_ticket):
    traceparent, trace_id, _ = new_traceparent()
    unsampled = traceparent.removesuffix("-01") + "-00"
    with recording_spans() as exporter:
        response = signed_in.post(
            "/api/orders", {"ticketId": make_ticket().id}, format="json", HTTP_TRACEPARENT=unsampled
        )
    assert response.status_code == 201
    assert exporter.get_finished_spans() == ()
    sent = OutboxEvent.objects.get(subject="order:created").trace_context["traceparent"]
    assert sent.startswith(f"00-{trace_id}-") and sent.endswith("-00")


def test_a_request_without_traceparent_writes_no_trace_context(signed_in, make_ticket):
    response = signed_in.post("/api/orders", {"ticketId": make_ticket().id}, format="json")
    assert response.status_code == 201
    assert OutboxEvent.objects.get(subject="order:created").trace_context is None


def test_with_an_sdk_a_request_without_traceparent_starts_a_trace_its_event_carries(signed_in, make_ticket):
    with recording_spans() as exporter:
        response = signed_in.post("/api/orders", {"ticketId": make_ticket().id}, format="json")
    assert response.status_code == 201
    server = one(exporter.get_finished_spans(), "POST /api/orders")
    assert server.parent is None
    trace_id, _ = parse_traceparent(OutboxEvent.objects.get(subject="order:created").trace_context["traceparent"])
    assert trace_id == hex_ids(server)[0]


@pytest.mark.parametrize("traceparent", ["", "garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01", "00-zz-yy-01"])
def test_a_malformed_traceparent_is_ignored_not_an_error(signed_in, make_ticket, traceparent):
    response = signed_in.post(
        "/api/orders", {"ticketId": make_ticket().id}, format="json", HTTP_TRACEPARENT=traceparent
    )
    assert response.status_code == 201
    assert OutboxEvent.objects.get(subject="order:created").trace_context is None
    with recording_spans() as exporter:
        response = signed_in.get("/api/orders", HTTP_TRACEPARENT=traceparent)
    assert response.status_code == 200
    assert one(exporter.get_finished_spans(), "GET /api/orders").parent is None


@pytest.mark.parametrize(
    ("status", "code"), [(200, StatusCode.UNSET), (404, StatusCode.UNSET), (503, StatusCode.ERROR)]
)
def test_only_a_server_error_marks_the_request_span_as_failed(rf, status, code):
    middleware = tracing.TracingMiddleware(lambda request: HttpResponse(status=status))
    with recording_spans() as exporter:
        assert middleware(rf.get("/nowhere")).status_code == status
    [span] = exporter.get_finished_spans()
    assert (span.name, span.attributes["http.response.status_code"], span.status.status_code) == ("GET", status, code)
