"""The order body's `ticketId`: one message for every wrong value, whatever characters it holds."""

from __future__ import annotations

import pytest

from orders.models import Order

pytestmark = pytest.mark.django_db

TICKET_ID_REQUIRED = {"errors": [{"message": "TicketId must be provided", "field": "ticketId"}]}


@pytest.mark.parametrize(
    "raw_value",
    [
        rb'"\ud800"',
        rb'"\udfff"',
        rb'"65f0c0ffee0000000000abc\ud800"',
        rb'"\u0000"',
        rb'"65f0c0ffee0000000000abc\u0000"',
        rb'"65f0c0ffee0000000000abcd\u0000"',
        rb'"\ud800\u0000"',
        rb'"65f0c0ffee0000000000abcd "',
        rb'"\uff16\uff15f0c0ffee0000000000abc"',
    ],
    ids=[
        "high-surrogate",
        "low-surrogate",
        "hex-and-surrogate",
        "nul",
        "hex-and-nul",
        "id-then-nul",
        "both",
        "space",
        "fullwidth",
    ],
)
@pytest.mark.parametrize("key", ["ticketId", "ticketID"])
def test_a_ticket_id_with_nul_or_a_lone_surrogate_is_ticket_id_must_be_provided(signed_in, raw_value, key):
    body = b'{"' + key.encode() + b'": ' + raw_value + b"}"

    response = signed_in.generic("POST", "/api/orders", body, "application/json")

    assert (response.status_code, response.json()) == (400, TICKET_ID_REQUIRED)
    assert not Order.objects.exists()


def test_an_upper_case_ticket_id_is_stored_lower_case(signed_in, make_ticket):
    ticket = make_ticket()

    response = signed_in.post("/api/orders", {"ticketId": ticket.id.upper()}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["ticket"]["id"] == ticket.id
