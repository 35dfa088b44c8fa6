"""Traces with OpenTelemetry: W3C trace context in from HTTP and NATS, out through the outbox; OTLP export when configured."""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

TRACER_NAME = "ticketing_orders"
DEFAULT_SERVICE_NAME = "orders"
MESSAGING_SYSTEM = "nats"

# None: no SDK configured. Nothing is recorded and nothing exported, but an incoming context is still
# carried through (HTTP -> outbox row -> NATS header -> listener -> outbox row), so a caller's trace id
# reaches the events it causes. Every hot path below tests this first.
_tracer: Tracer | None = None


# --- configuration ---------------------------------------------------------------------------------


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """Which span exporters the environment asks for: `otlp`, `console`, or none at all.

    OTEL_TRACES_EXPORTER as the specification names it; when it is unset, OTLP only if an endpoint is
    given (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), so a deployment that says
    nothing pays nothing (the specification's default would export to localhost:4318).
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = environ.get("OTEL_TRACES_EXPORTER")
    if names is None:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    wanted = [name.strip().lower() for name in names.split(",") if name.strip()]
    unknown = sorted(set(wanted) - {"otlp", "console", "none"})
    if unknown:
        raise ImproperlyConfigured(f"OTEL_TRACES_EXPORTER: unknown exporter {', '.join(unknown)} (otlp, console, none)")
    return [name for name in dict.fromkeys(wanted) if name != "none"]


def configure_tracing(environ: Mapping[str, str] | None = None) -> bool:
    """Install the SDK when the environment asks for an exporter; whether it did. Once per process.

    Everything else is the SDK's own OTEL_* handling: OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES,
    OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_* (the batch processor's queue and schedule) and the
    OTEL_EXPORTER_OTLP_* endpoint, headers, timeout and compression.
    """
    global _tracer
    environ = os.environ if environ is None else environ
    names = exporter_names(environ)
    if not names or _tracer is not None:
        return _tracer is not None
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if "otlp" in names and protocol not in (None, "", "http/protobuf"):
        raise ImproperlyConfigured(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf is installed")

    # Imported here, not at the top: a process that records nothing never loads the SDK.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        # Neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES named the service.
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
        # Spans leave on the processor's thread, in batches: a request never waits for the collector.
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer(TRACER_NAME)
    return True


def use_tracer(tracer: Tracer | None) -> Tracer | None:
    """Record with `tracer` from now on (None: record nothing); the previous one. For tests and tools."""
    global _tracer
    previous, _tracer = _tracer, tracer
    return previous


def recording() -> bool:
    """Whether spans are being recorded in this process."""
    return _tracer is not None


# --- carriers --------------------------------------------------------------------------------------


class HeadersGetter(Getter[Mapping[str, str]]):
    """Reads a header whatever its case: NATS headers are case-sensitive, peers' clients are not alike."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            lowered = key.lower()
            value = next((v for k, v in carrier.items() if k.lower() == lowered), None)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


HEADERS = HeadersGetter()


class WsgiEnvironGetter(Getter[Mapping[str, str]]):
    """Reads a request header straight from the WSGI environ (`HTTP_TRACEPARENT`), without building
    `request.headers` (a pass over every META key) for the two or three the propagators ask for."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


WSGI_ENVIRON = WsgiEnvironGetter()


def _carries_context(headers: Mapping[str, str] | None) -> bool:
    return bool(headers) and any(k.lower() == "traceparent" for k in headers)


def current_trace_headers() -> dict[str, str] | None:
    """The current trace context as W3C headers (`traceparent`, `tracestate` if any); None outside a trace."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def _extract(headers: Mapping[str, str] | None) -> otel_context.Context | None:
    return propagate.extract(headers, getter=HEADERS) if _carries_context(headers) else None


@contextlib.contextmanager
def _attached(ctx: otel_context.Context | None) -> Iterator[None]:
    if ctx is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def _messaging(subject: str, operation: str, msg_id: str | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.destination.name": subject,
        "messaging.operation.type": operation,
    }
    if msg_id:
        attributes["messaging.message.id"] = msg_id
    return attributes


# --- database --------------------------------------------------------------------------------------


_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE|JOIN)\s+"?([A-Za-z_][A-Za-z0-9_]*)"?', re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def statement_summary(sql: str) -> tuple[str, str]:
    """(operation, first table) of a statement, for the span's name: `SELECT`, `tickets_replica_ticket`."""
    words = sql.split(None, 1)
    operation = words[0].upper() if words else "QUERY"
    table = _TABLE.search(sql)
    return operation, table.group(1) if table else ""


def _db_span(execute: Callable, sql: str, params: Any, many: bool, context: dict) -> Any:
    """Django execute wrapper: one CLIENT span per statement, below whatever span is current."""
    tracer = _tracer
    if tracer is None or not trace.get_current_span().is_recording():  # off, or a trace sampled out
        return execute(sql, params, many, context)
    db = context["connection"]
    operation, table = statement_summary(sql)
    attributes = {
        "db.system.name": db.vendor,
        "db.namespace": str(db.settings_dict.get("NAME") or ""),
        "db.operation.name": operation,
        # Statements are parameterized: the text holds placeholders, never a value.
        "db.query.text": sql,
    }
    if table:
        attributes["db.collection.name"] = table
    if many:
        attributes["db.operation.batch.size"] = len(params) if hasattr(params, "__len__") else -1
    with tracer.start_as_current_span(
        f"{operation} {table}" if table else operation, kind=SpanKind.CLIENT, attributes=attributes
    ):
        return execute(sql, params, many, context)


@contextlib.contextmanager
def _recorded(
    tracer: Tracer,
    name: str,
    *,
    kind: SpanKind,
    parent: otel_context.Context | None = None,
    attributes: dict[str, Any] | None = None,
    links: Iterable[Link] = (),
) -> Iterator[Span]:
    """A current span whose database statements (on this thread's default connection) are spans too."""
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes, links=list(links)
    ) as span:
        if _db_span in connection.execute_wrappers:  # inside another span of ours: already wrapped
            yield span
            return
        with connection.execute_wrapper(_db_span):
            yield span


# --- HTTP ------------------------------------------------------------------------------------------

_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")
_PATH_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


@functools.lru_cache(maxsize=256)
def route_template(route: str) -> str:
    """`^api/orders/(?P<order_id>[^/]+)/?$` as `/api/orders/{order_id}`: the span's name, of low cardinality."""
    template = route.replace("^", "").replace("$", "").replace("/?", "")
    template = _PATH_CONVERTER.sub(r"{\1}", _REGEX_GROUP.sub(r"{\1}", template))
    return "/" + template.lstrip("/")


class TracingMiddleware:
    """Continues an incoming W3C `traceparent` into the request: a SERVER span, its queries below it.

    First in MIDDLEWARE, so the span covers the others. Without an SDK only a request that carries a
    `traceparent` does any work here: its context is made current, so the events it writes carry it.
    """

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request):
        tracer = _tracer
        if tracer is None:
            if "HTTP_TRACEPARENT" not in request.META:
                return self.get_response(request)  # the default: nothing to carry, nothing to record
            with _attached(propagate.extract(request.META, getter=WSGI_ENVIRON)):
                return self.get_response(request)
        method = request.method
        attributes = {"http.request.method": method, "url.path": request.path, "url.scheme": request.scheme}
        parent = propagate.extract(request.META, getter=WSGI_ENVIRON) if "HTTP_TRACEPARENT" in request.META else None
        with _recorded(tracer, method, kind=SpanKind.SERVER, parent=parent, attributes=attributes) as span:
            response = self.get_response(request)
            match = request.resolver_match
            if match is not None and match.route:
                route = route_template(match.route)
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}")
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response


# --- the outbox and NATS ---------------------------------------------------------------------------


@contextlib.contextmanager
def outbox_write(subject: str, msg_id: str) -> Iterator[dict[str, str] | None]:
    """Around writing an outbox row: a `create <subject>` span; yields the trace headers to keep in the row.

    Without an SDK the row keeps the current context as it is (the incoming request's or message's).
    """
    tracer = _tracer
    if tracer is None:
        yield current_trace_headers()
        return
    with _recorded(
        tracer, f"create {subject}", kind=SpanKind.PRODUCER, attributes=_messaging(subject, "create", msg_id)
    ):
        yield current_trace_headers()


def relay_send(subject: str, msg_id: str, trace_headers: Mapping[str, str] | None) -> contextlib.AbstractContextManager:
    """Around one publish: a `send <subject>` span in the row's trace; yields the headers to send with it.

    A plain context manager (nothing made current), so it may span an `await`.
    """
    if _tracer is None:
        return contextlib.nullcontext(trace_headers or {})
    return _send_span(_tracer, subject, msg_id, trace_headers)


@contextlib.contextmanager
def _send_span(tracer: Tracer, subject: str, msg_id: str, trace_headers: Mapping[str, str] | None) -> Iterator[dict]:
    span = tracer.start_span(
        f"send {subject}",
        context=_extract(trace_headers),
        kind=SpanKind.PRODUCER,
        attributes=_messaging(subject, "send", msg_id),
    )
    headers: dict[str, str] = {}
    propagate.inject(headers, context=trace.set_span_in_context(span))
    try:
        yield headers
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        span.end()


def consume(subject: str, headers: Mapping[str, str] | None) -> contextlib.AbstractContextManager:
    """Around applying one consumed message: a `process <subject>` span continuing the message's trace.

    Without an SDK the message's context is made current, so the events its handler writes carry its
    trace id; a message without one costs nothing.
    """
    if _tracer is None:
        return _attached(_extract(headers)) if _carries_context(headers) else contextlib.nullcontext()
    return _recorded(
        _tracer,
        f"process {subject}",
        kind=SpanKind.CONSUMER,
        parent=_extract(headers),
        attributes=_messaging(subject, "process", _msg_id(headers)),
    )


def _msg_id(headers: Mapping[str, str] | None) -> str | None:
    return headers.get("Nats-Msg-Id") if headers else None


@contextlib.contextmanager
def consume_batch(subject: str, headers: list[Mapping[str, str] | None]) -> Iterator[None]:
    """Around applying several messages in one transaction.

    One message: as `consume`. Several: one `process <subject>` span for the shared work, linked to each
    message's context, and in each message's own trace a `process <subject>` span linked to it, so every
    peer's trace shows its event consumed. Without an SDK nothing is carried: a batch handler writes no
    events (the ticket listeners only update the replica).
    """
    tracer = _tracer
    if len(headers) == 1:
        with consume(subject, headers[0]):
            yield
        return
    if tracer is None:
        yield
        return
    parents = [_extract(h) for h in headers]
    links = [Link(trace.get_current_span(p).get_span_context()) for p in parents if p is not None]
    attributes = {**_messaging(subject, "process"), "messaging.batch.message_count": len(headers)}
    with _recorded(tracer, f"process {subject}", kind=SpanKind.CONSUMER, attributes=attributes, links=links) as batch:
        batch_link = [Link(batch.get_span_context())]
        each = [
            tracer.start_span(
                f"process {subject}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes=_messaging(subject, "process", _msg_id(h)),
                links=batch_link,
            )
            for parent, h in zip(parents, headers, strict=True)
            if parent is not None
        ]
        try:
            yield
        except BaseException as exc:
            for span in (batch, *each):
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            for span in each:
                span.end()
