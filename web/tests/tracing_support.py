"""Test support for traces: spans recorded in memory by the real SDK, and W3C `traceparent` values."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core import tracing
from core.ids import new_object_id


@contextlib.contextmanager
def recording_spans() -> Iterator[InMemorySpanExporter]:
    """The service records its spans with the SDK into memory meanwhile (as with an exporter configured)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = tracing.use_tracer(provider.get_tracer("tests"))
    try:
        yield exporter
    finally:
        tracing.use_tracer(previous)
        provider.shutdown()


def new_traceparent() -> tuple[str, str, str]:
    """A sampled `traceparent` as a peer would send it: (header value, trace id, span id), lower-case hex."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def parse_traceparent(value: str) -> tuple[str, str]:
    """(trace id, parent span id) of a `traceparent` header."""
    version, trace_id, span_id, flags = value.split("-")
    assert (version, len(trace_id), len(span_id), len(flags)) == ("00", 32, 16, 2), value
    return trace_id, span_id


def hex_ids(span: ReadableSpan) -> tuple[str, str, str]:
    """(trace id, span id, parent span id or "") of a recorded span, as in `traceparent`."""
    context = span.get_span_context()
    parent = f"{span.parent.span_id:016x}" if span.parent is not None else ""
    return f"{context.trace_id:032x}", f"{context.span_id:016x}", parent


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, f"{len(found)} spans named {name!r} in {[s.name for s in spans]}"
    return found[0]


def publish_traced(jetstream, subject: str, payload: dict, traceparent: str) -> None:
    """Publish as a traced peer service would: Nats-Msg-Id and its `traceparent` (a harness JetStream client)."""
    headers = {"Nats-Msg-Id": new_object_id(), "traceparent": traceparent}
    jetstream.call(jetstream.js.publish(subject, json.dumps(payload).encode(), headers=headers, timeout=5))
