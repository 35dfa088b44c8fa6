"""The events' AsyncAPI document: generated from the payload models, served, committed, and valid for AsyncAPI's parser."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

from messaging.asyncapi import build_document
from messaging.events import EVENT_TYPES, ORDER_STATUSES, OrderCreated, Subject, encode_json, parse_event
from orders.models import OrderStatus
from tests.contract.published import DOCUMENT, assert_published_events_conform

HERE = Path(__file__).resolve().parent
COURSE_PAYLOADS = HERE / "course_payloads.json"
URL = "/api/orders/asyncapi.json"
NODE_TIMEOUT_SECONDS = 60
NPM_CI_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="session")
def asyncapi_parser() -> Path:
    """validate.mjs with @asyncapi/parser installed from the committed lock (make test does the same npm ci)."""
    node = shutil.which("node")
    assert node, "the AsyncAPI check needs Node 20+ (apt-get install nodejs npm)"
    stamp = HERE / "node_modules" / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < (HERE / "package-lock.json").stat().st_mtime:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=HERE,
            check=True,
            timeout=NPM_CI_TIMEOUT_SECONDS,
        )
        stamp.touch()
    return HERE / "validate.mjs"


def run_parser(script: Path, document: Path, messages: Path | None = None) -> tuple[int, dict]:
    args = ["node", str(script), str(document), *([str(messages)] if messages else [])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=NODE_TIMEOUT_SECONDS)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def written(tmp_path: Path, name: str, content: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def test_the_committed_document_is_what_the_command_writes(tmp_path):
    output = tmp_path / "asyncapi.json"

    call_command("asyncapi", output=output)

    assert output.read_text(encoding="utf-8") == DOCUMENT.read_text(encoding="utf-8"), (
        "docs/asyncapi.json is stale: python manage.py asyncapi --output docs/asyncapi.json"
    )


def test_the_document_is_served_public_json_and_cached(client):
    response = client.get(URL, HTTP_COOKIE="session=%%%not-base64", HTTP_AUTHORIZATION="Bearer not.a.token")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.content == DOCUMENT.read_bytes()
    assert response["Cache-Control"] == "public, max-age=300"
    again = client.get(URL, HTTP_IF_NONE_MATCH=response["ETag"])
    assert (again.status_code, again.content, again["ETag"]) == (304, b"", response["ETag"])


def test_another_method_is_a_405_in_the_error_shape(client):
    response = client.post(URL, data="{}", content_type="application/json")

    assert response.status_code == 405
    assert response.json() == {"errors": [{"message": 'Method "POST" not allowed.'}]}


def test_the_document_names_six_channels_their_operations_and_headers():
    document = build_document()

    assert document["asyncapi"] == "3.0.0"
    assert {c["address"]: (c["x-publisher"], c["x-consumers"]) for c in document["channels"].values()} == {
        "ticket:created": ("tickets", ["orders"]),
        "ticket:updated": ("tickets", ["orders"]),
        "order:created": ("orders", ["tickets", "payments", "expiration"]),
        "order:cancelled": ("orders", ["tickets", "payments"]),
        "expiration:complete": ("expiration", ["orders"]),
        "payment:created": ("payments", ["orders"]),
    }
    actions = {name: op["action"] for name, op in document["operations"].items()}
    assert actions == {
        "consumeTicketCreated": "receive",
        "consumeTicketUpdated": "receive",
        "publishOrderCreated": "send",
        "publishOrderCancelled": "send",
        "consumeExpirationComplete": "receive",
        "consumePaymentCreated": "receive",
    }
    headers = document["components"]["schemas"]["EventHeaders"]
    assert headers["required"] == ["Nats-Msg-Id"]
    assert set(headers["properties"]) == {"Nats-Msg-Id", "traceparent"}
    for message in document["components"]["messages"].values():
        assert message["headers"] == {"$ref": "#/components/schemas/EventHeaders"}


def test_each_payload_schema_is_the_one_its_model_generates():
    schemas = build_document()["components"]["schemas"]

    for subject, model in EVENT_TYPES.items():
        schema = schemas[model.__name__]
        assert schema["required"] == [name for name, field in model.model_fields.items() if field.is_required()]
        assert list(schema["properties"]) == list(model.model_fields), subject
    assert schemas["OrderCreated"]["properties"]["status"]["enum"] == list(ORDER_STATUSES)
    assert schemas["TicketCreated"]["properties"]["id"]["pattern"] == "^[0-9a-fA-F]{24}$"


def test_every_order_status_is_one_an_event_may_carry():
    """What the orders app stores, order:created can say (the event module keeps the vocabulary)."""
    payload = {
        "id": "65f0c0ffee00000000000001",
        "version": 0,
        "userId": "u1",
        "expiresAt": "2026-11-25T10:15:00.000Z",
        "ticket": {"id": "65f0c0ffee0000000000abcd", "price": 10},
    }
    for status in OrderStatus.values:
        assert OrderCreated.from_payload({**payload, "status": status}).status == status


def test_asyncapi_parser_accepts_the_document_and_the_course_payloads(asyncapi_parser):
    code, result = run_parser(asyncapi_parser, DOCUMENT, COURSE_PAYLOADS)

    assert (code, result["valid"], result["problems"]) == (0, True, [])
    course = json.loads(COURSE_PAYLOADS.read_text(encoding="utf-8"))
    expected = sum(len(payloads) for subject, payloads in course.items() if not subject.startswith("_"))
    assert [m["valid"] for m in result["messages"]] == [True] * expected
    assert {m["address"] for m in result["messages"]} == {s.value for s in Subject}


def test_the_course_payloads_pass_the_models_the_document_comes_from():
    course = json.loads(COURSE_PAYLOADS.read_text(encoding="utf-8"))

    for subject, payloads in course.items():
        if subject.startswith("_"):
            continue
        for payload in payloads:
            assert parse_event(subject, encode_json(payload)).to_payload() == payload


def test_asyncapi_parser_refuses_a_broken_document(asyncapi_parser, tmp_path):
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    broken = copy.deepcopy(document)
    del broken["info"]["version"]
    broken["operations"]["publishOrderCreated"]["channel"] = {"$ref": "#/channels/nowhere"}

    code, result = run_parser(asyncapi_parser, written(tmp_path, "broken.json", broken))

    assert (code, result["valid"]) == (1, False)
    assert {p["code"] for p in result["problems"] if p["severity"] == "error"} >= {
        "asyncapi-document-resolved",
        "invalid-ref",
    }


def test_asyncapi_parser_refuses_a_payload_the_document_does_not_allow(asyncapi_parser, tmp_path):
    ticket = {"id": "6561f0c2a1b2c3d4e5f60718", "version": 0, "title": "concert", "price": 20, "userId": "u1"}
    messages = {"ticket:created": [ticket, {**ticket, "price": "20"}, {**ticket, "version": True}]}

    code, result = run_parser(asyncapi_parser, DOCUMENT, written(tmp_path, "messages.json", messages))

    assert code == 1
    assert [m["valid"] for m in result["messages"]] == [True, False, False]


@pytest.mark.nats
def test_the_published_events_check_refuses_an_event_off_the_document(jetstream, nats_server):
    """The teardown check of every test's nats-server fails on an order:created the document refuses."""
    jetstream.ensure_streams()
    good = OrderCreated(
        id="65f0c0ffee00000000000001",
        version=0,
        status="created",
        userId="u1",
        expiresAt="2026-11-25T10:15:00.000Z",
        ticket={"id": "65f0c0ffee0000000000abcd", "price": 10},
    ).to_payload()
    jetstream.publish("order:created", good)
    assert assert_published_events_conform(nats_server.url) == 1

    jetstream.publish("order:created", {**good, "ticket": {"id": good["ticket"]["id"]}})
    with pytest.raises(AssertionError, match=r"order:created: payload ticket: 'price' is a required property"):
        assert_published_events_conform(nats_server.url)
    # Leave nothing for the fixture's own check to refuse.
    jetstream.call(jetstream.js.purge_stream(jetstream.stream_name("order:created"), subject="order:created"))
