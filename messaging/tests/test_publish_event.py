"""`python manage.py publish_event SUBJECT JSON`: publishing one event as another service would."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from testsupport.testrun import ticket_payload

pytestmark = pytest.mark.nats

TICKET_ID = "65f0c0ffee0000000000abcd"


def publish_event(*args: str) -> str:
    out = io.StringIO()
    call_command("publish_event", *args, stdout=out)
    return out.getvalue()


def test_publishes_a_valid_event_with_its_msg_id(nats_server, jetstream):
    payload = json.dumps(ticket_payload(TICKET_ID.upper(), 0, title="concert", price=20.0))

    output = publish_event("ticket:created", payload, "--msg-id", "tickets-1")

    assert output == "published ticket:created to ticketing seq=1 msg-id=tickets-1\n"
    [message] = jetstream.messages("ticket:created")
    assert message.headers["Nats-Msg-Id"] == "tickets-1"
    # Validated and normalised on the way out, as the schema reads it.
    assert json.loads(message.data) == ticket_payload(TICKET_ID, 0, title="concert", price=20)


def test_a_repeated_msg_id_is_dropped_by_the_stream(nats_server, jetstream):
    payload = json.dumps({"orderId": TICKET_ID})
    publish_event("expiration:complete", payload, "--msg-id", "exp-1")

    output = publish_event("expiration:complete", payload, "--msg-id", "exp-1")

    assert output.endswith("msg-id=exp-1 (duplicate, dropped by the stream)\n")
    assert len(jetstream.messages("expiration:complete")) == 1


def test_each_publish_gets_a_new_msg_id_by_default(nats_server, jetstream):
    payload = json.dumps({"orderId": TICKET_ID})
    publish_event("expiration:complete", payload)
    publish_event("expiration:complete", payload)

    ids = [m.headers["Nats-Msg-Id"] for m in jetstream.messages("expiration:complete")]
    assert len(set(ids)) == 2


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ('{"orderId": "nope"}', "expiration:complete: orderId must be a 24-hex id (use --raw to send it anyway)"),
        ("{}", "expiration:complete: orderId is required (use --raw to send it anyway)"),
        ("not json", "payload is not valid UTF-8 JSON"),
    ],
)
def test_refuses_an_invalid_payload_unless_raw(nats_server, jetstream, payload, error):
    with pytest.raises(CommandError) as refused:
        publish_event("expiration:complete", payload)
    assert error in str(refused.value)
    assert "Traceback" not in str(refused.value)

    publish_event("expiration:complete", payload, "--raw")

    [message] = jetstream.messages("expiration:complete")
    assert message.data == payload.encode()


@pytest.mark.parametrize("raw", [[], ["--raw"]])
def test_refuses_an_unknown_subject(nats_server, jetstream, raw):
    with pytest.raises(CommandError) as refused:
        publish_event("ticket:deleted", json.dumps(ticket_payload(TICKET_ID)), *raw)
    assert str(refused.value) == "unknown subject 'ticket:deleted'"  # no hint that --raw would help
    assert jetstream.stream_names() == []  # nothing was set up or sent


def test_says_so_when_nats_cannot_be_reached(settings):
    settings.NATS_URL = "nats://127.0.0.1:9"  # nothing listens on the discard port

    with pytest.raises(CommandError, match="cannot reach NATS"):
        publish_event("expiration:complete", json.dumps({"orderId": TICKET_ID}))
