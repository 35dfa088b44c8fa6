"""Payload schemas of the six subjects: what is accepted, normalised and refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from messaging.events import (
    EVENT_TYPES,
    InvalidEvent,
    OrderCreated,
    Subject,
    TicketRef,
    TicketUpdated,
    encode_json,
    parse_event,
)

TICKET = {"id": "65F0C0FFEE0000000000ABCD", "version": 3, "title": "concert", "price": 20.0, "userId": "u1"}


def test_every_subject_has_a_schema():
    assert set(EVENT_TYPES) == set(Subject)
    assert {s.value for s in Subject} == {
        "ticket:created",
        "ticket:updated",
        "order:created",
        "order:cancelled",
        "expiration:complete",
        "payment:created",
    }


def test_ticket_event_is_normalised():
    event = parse_event("ticket:updated", encode_json(TICKET))
    assert event == TicketUpdated(id="65f0c0ffee0000000000abcd", version=3, title="concert", price=20, userId="u1")
    assert event.to_payload() == {**TICKET, "id": "65f0c0ffee0000000000abcd", "price": 20}
    assert isinstance(event.to_payload()["price"], int)


def test_optional_order_id_is_kept_when_present():
    event = parse_event("ticket:updated", encode_json({**TICKET, "orderId": "65f0c0ffee00000000000001"}))
    assert event.orderId == "65f0c0ffee00000000000001"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b'{"price": NaN}', "not valid UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (encode_json({**TICKET, "id": "nope"}), "id must be a 24-hex id"),
        (encode_json({k: v for k, v in TICKET.items() if k != "version"}), "version is required"),
        (encode_json({**TICKET, "version": -1}), "version must be a whole number"),
        (encode_json({**TICKET, "version": True}), "version must be a whole number"),
        (encode_json({**TICKET, "version": 1.5}), "version must be a whole number"),
        (encode_json({**TICKET, "price": "20"}), "price must be a finite number"),
        (encode_json({**TICKET, "price": -1}), "price must be a finite number"),
        (encode_json({**TICKET, "title": ""}), "title must be a non-empty string"),
        (encode_json({**TICKET, "title": None}), "title is required"),
        (encode_json({**TICKET, "price": True}), "price must be a finite number"),
        (encode_json({**TICKET, "id": TICKET["id"] + "\n"}), "id must be a 24-hex id"),
        # Too large for a float: refused like any bad price, not an OverflowError that would crash the batch.
        (encode_json(TICKET).replace(b'"price":20.0', b'"price":1' + b"0" * 400), "price must be a finite number"),
        (encode_json(TICKET).replace(b'"price":20.0', b'"price":1e400'), "price must be a finite number"),
        # NaN anywhere, even under a key the schema ignores, is not JSON.
        (encode_json(TICKET)[:-1] + b',"extra":NaN}', "not valid UTF-8 JSON"),
        (b'{"id": "65f0c0ffee0000000000abcd", "title": "\\ud800"}', "not valid UTF-8 JSON"),
    ],
)
def test_invalid_ticket_events_are_refused(data, message):
    with pytest.raises(InvalidEvent, match=message):
        parse_event("ticket:created", data)


def test_keys_the_schema_does_not_name_are_ignored_and_a_null_order_id_is_absent():
    event = parse_event("ticket:updated", encode_json({**TICKET, "orderId": None, "color": "red"}))

    assert event.orderId is None
    assert event.to_payload() == {**TICKET, "id": "65f0c0ffee0000000000abcd", "price": 20}


def test_an_event_built_in_code_is_checked_like_one_read_from_the_wire():
    with pytest.raises(ValidationError):
        TicketRef(id="not-an-id")


def test_unknown_subject_is_refused():
    with pytest.raises(InvalidEvent, match="unknown subject"):
        parse_event("ticket:*", b"{}")


def test_order_created_checks_its_nested_ticket():
    payload = {
        "id": "65f0c0ffee00000000000001",
        "version": 0,
        "status": "created",
        "userId": "u1",
        "expiresAt": "2026-11-25T10:15:00.000Z",
        "ticket": {"id": "65f0c0ffee0000000000abcd", "price": 10.5},
    }
    assert OrderCreated.from_payload(payload).to_payload() == payload
    with pytest.raises(InvalidEvent, match=r"^order:created: ticket\.price is required$"):
        OrderCreated.from_payload({**payload, "ticket": {"id": "65f0c0ffee0000000000abcd"}})
    with pytest.raises(InvalidEvent, match=r"^order:created: ticket must be a JSON object$"):
        OrderCreated.from_payload({**payload, "ticket": [1]})
    with pytest.raises(InvalidEvent, match="status"):
        OrderCreated.from_payload({**payload, "status": "shipped"})
    with pytest.raises(InvalidEvent, match="expiresAt"):
        OrderCreated.from_payload({**payload, "expiresAt": "tomorrow"})
