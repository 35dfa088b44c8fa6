"""The events as an AsyncAPI 3.0 document, its payload and header schemas generated from messaging.events."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from django.http import HttpResponse, HttpResponseNotModified
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from messaging.events import EVENT_TYPES, EventHeaders, Subject

ASYNCAPI_VERSION = "3.0.0"
# The version of the event contract this document describes; the course's payloads are its 1.0.
DOCUMENT_VERSION = "1.0.0"
SERVICE = "orders"

# Who publishes and who consumes each subject on the platform (the course's services).
PUBLISHERS: dict[Subject, str] = {
    Subject.TICKET_CREATED: "tickets",
    Subject.TICKET_UPDATED: "tickets",
    Subject.ORDER_CREATED: SERVICE,
    Subject.ORDER_CANCELLED: SERVICE,
    Subject.EXPIRATION_COMPLETE: "expiration",
    Subject.PAYMENT_CREATED: "payments",
}
CONSUMERS: dict[Subject, tuple[str, ...]] = {
    Subject.TICKET_CREATED: (SERVICE,),
    Subject.TICKET_UPDATED: (SERVICE,),
    Subject.ORDER_CREATED: ("tickets", "payments", "expiration"),
    Subject.ORDER_CANCELLED: ("tickets", "payments"),
    Subject.EXPIRATION_COMPLETE: (SERVICE,),
    Subject.PAYMENT_CREATED: (SERVICE,),
}
# What this service does on each subject it consumes (the contract's words).
CONSUMED_HOW: dict[Subject, str] = {
    Subject.TICKET_CREATED: "Creates the replica ticket; a ticket already there is left as it is.",
    Subject.TICKET_UPDATED: "The newest version wins: applied when its version is greater than the replica's "
    "(creating the ticket if missing); an older or equal one is acked and ignored.",
    Subject.EXPIRATION_COMPLETE: "Cancels the order if it is created or awaiting:payment, publishing order:cancelled.",
    Subject.PAYMENT_CREATED: "Marks the order complete.",
}
PUBLISHED_WHEN: dict[Subject, str] = {
    Subject.ORDER_CREATED: "When an order is created (version 0), from the transactional outbox.",
    Subject.ORDER_CANCELLED: "When an order is cancelled, by the API or by expiration, with its new version.",
}
HEADERS_SCHEMA = "EventHeaders"


class ContractSchema(GenerateJsonSchema):
    """pydantic's JSON Schema without a title on every property (`Id`, `Version`): the names say it."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def camel(subject: Subject) -> str:
    """`ticket:created` -> `ticketCreated`, the id of its channel, message and operation."""
    head, tail = subject.value.split(":")
    return head + tail[:1].upper() + tail[1:]


def component_schemas() -> dict[str, Any]:
    """Every payload model, the models they nest and the headers, as `#/components/schemas/<Model>`."""
    models: list[type[BaseModel]] = [*EVENT_TYPES.values(), EventHeaders]
    _, top = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
        schema_generator=ContractSchema,
    )
    return dict(sorted(top["$defs"].items()))


def channel(subject: Subject) -> dict[str, Any]:
    name = camel(subject)
    *others, last = CONSUMERS[subject]
    consumers = f"{', '.join(others)} and {last} services" if others else f"{last} service"
    return {
        "address": subject.value,
        "title": subject.value,
        "description": f"Published by the {PUBLISHERS[subject]} service; consumed by the {consumers}.",
        "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        "x-publisher": PUBLISHERS[subject],
        "x-consumers": list(CONSUMERS[subject]),
    }


def operation(subject: Subject) -> tuple[str, dict[str, Any]]:
    name = camel(subject)
    sends = PUBLISHERS[subject] == SERVICE
    body = {
        "action": "send" if sends else "receive",
        "channel": {"$ref": f"#/channels/{name}"},
        "summary": PUBLISHED_WHEN[subject] if sends else CONSUMED_HOW[subject],
        "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
    }
    if not sends:
        body["description"] = (
            "A durable pull consumer shared by every worker replica (queue group orders-service); a message is "
            "acked only after its effect is committed, and one that can never apply is recorded for an "
            "operator and terminated."
        )
    return ("publish" if sends else "consume") + name[:1].upper() + name[1:], body


def message(subject: Subject) -> dict[str, Any]:
    model = EVENT_TYPES[subject]
    return {
        "name": subject.value,
        "title": subject.value,
        "summary": (model.__doc__ or "").strip(),
        "contentType": "application/json",
        "headers": {"$ref": f"#/components/schemas/{HEADERS_SCHEMA}"},
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
    }


def build_document() -> dict[str, Any]:
    operations = dict(operation(subject) for subject in Subject)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:ticketing:orders-service:events",
        "info": {
            "title": "Ticketing orders service events",
            "version": DOCUMENT_VERSION,
            "description": "The six subjects of the ticketing platform on NATS JetStream, with the course's "
            "payloads: what the orders service publishes and what it consumes. Payloads are UTF-8 JSON; "
            "every message carries a Nats-Msg-Id header, and a traceparent header when the request or "
            "event that caused it carried one. Keys a payload schema does not name are ignored.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "nats-srv:4222",
                "protocol": "nats",
                "description": "NATS with JetStream; the stream (NATS_STREAM, default `ticketing`) captures all six "
                "subjects.",
            }
        },
        "channels": {camel(subject): channel(subject) for subject in Subject},
        "operations": operations,
        "components": {
            "schemas": component_schemas(),
            "messages": {camel(subject): message(subject) for subject in Subject},
        },
    }


def render(document: dict[str, Any]) -> str:
    """The document as committed in docs/asyncapi.json: indented, keys in the order written, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@functools.cache
def _rendered() -> tuple[bytes, str]:
    # Built once per process: the document only changes with the code.
    body = render(build_document()).encode("utf-8")
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


class AsyncAPIView(APIView):
    """GET /api/orders/asyncapi.json: public, like the OpenAPI document; revalidated by its ETag.

    A DRF view, so another method is a 405 in the contract's error shape like every other route.
    """

    authentication_classes: list = []
    permission_classes: list = []
    schema = None  # not an operation of the OpenAPI document

    def get(self, request: Request) -> HttpResponse:
        body, etag = _rendered()
        if etag in request.headers.get("If-None-Match", ""):
            response: HttpResponse = HttpResponseNotModified()
        else:
            response = HttpResponse(body, content_type="application/json")
        response["ETag"] = etag
        response["Cache-Control"] = "public, max-age=300"
        return response
