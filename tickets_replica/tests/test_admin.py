"""Replica tickets in the admin: listed with whether they are reserved, and never editable."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from messaging.order_status import OrderStatus
from orders.models import Order
from tickets_replica.models import Ticket

pytestmark = pytest.mark.django_db

CHANGELIST = "/api/orders/admin/tickets_replica/ticket/"


def add_order(ticket: Ticket, status: str) -> Order:
    return Order.objects.create(user_id="user-1", ticket=ticket, status=status, expires_at=timezone.now())


def row(html: str, ticket: Ticket) -> str:
    """The changelist's table row for `ticket`."""
    rows = [r for r in re.findall(r"<tr[^>]*>.*?</tr>", html, flags=re.DOTALL) if ticket.id in r]
    assert len(rows) == 1, f"expected one row for {ticket.id}, found {len(rows)}"
    return rows[0]


def reserved_cell(html: str, ticket: Ticket) -> str:
    match = re.search(r'<td class="field-reserved">(.*?)</td>', row(html, ticket), flags=re.DOTALL)
    assert match, "no reserved column in the row"
    return match.group(1)


@pytest.fixture
def tickets(make_ticket):
    free = make_ticket(title="free concert", price=10.5)
    held = make_ticket(title="held opera", price=20)
    add_order(held, OrderStatus.AWAITING_PAYMENT)
    released = make_ticket(title="released football", price=30)
    add_order(released, OrderStatus.CANCELLED)
    sold = make_ticket(title="sold ballet", price=40)
    add_order(sold, OrderStatus.CANCELLED)
    add_order(sold, OrderStatus.COMPLETE)
    return {"free": free, "held": held, "released": released, "sold": sold}


def test_the_list_shows_every_ticket_and_whether_it_is_reserved(admin_client, tickets):
    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'scope="col" class="sortable column-reserved"' in html
    expected = {"free": False, "held": True, "released": False, "sold": True}
    for name, reserved in expected.items():
        ticket = tickets[name]
        assert ticket.title in row(html, ticket)
        assert f'alt="{reserved}"' in reserved_cell(html, ticket), name
        # The column agrees with the model's own rule.
        assert ticket.is_reserved() is reserved


def test_the_list_sorts_by_reserved(admin_client, tickets):
    column = admin_client.get(CHANGELIST).context["cl"].list_display.index("reserved")

    ascending = admin_client.get(CHANGELIST, {"o": f"{column}"}).context["cl"].result_list
    descending = admin_client.get(CHANGELIST, {"o": f"-{column}"}).context["cl"].result_list

    assert [t.has_active_order for t in ascending] == [False, False, True, True]
    assert [t.has_active_order for t in descending] == [True, True, False, False]


def test_search_by_title_and_id(admin_client, tickets):
    by_title = admin_client.get(CHANGELIST, {"q": "opera"}).context["cl"].result_list
    by_id = admin_client.get(CHANGELIST, {"q": tickets["sold"].id}).context["cl"].result_list

    assert [t.id for t in by_title] == [tickets["held"].id]
    assert [t.id for t in by_id] == [tickets["sold"].id]


def test_tickets_cannot_be_added(admin_client, tickets):
    index = admin_client.get(CHANGELIST).content.decode()

    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert admin_client.post(f"{CHANGELIST}add/", {"id": "a" * 24, "title": "x", "price": 1}).status_code == 403
    assert f'href="{CHANGELIST}add/"' not in index
    assert Ticket.objects.count() == 4


def test_a_ticket_page_is_read_only(admin_client, tickets):
    ticket = tickets["held"]
    url = f"{CHANGELIST}{ticket.id}/change/"

    page = admin_client.get(url)
    edit = admin_client.post(url, {"title": "changed", "price": 1, "version": 9})

    assert page.status_code == 200
    html = page.content.decode()
    assert "View ticket" in html
    assert 'name="_save"' not in html
    assert 'name="title"' not in html
    assert "held opera" in html
    assert edit.status_code == 403
    assert Ticket.objects.filter(id=ticket.id).values_list("title", "price", "version").get() == ("held opera", 20, 0)


def test_tickets_cannot_be_deleted(admin_client, tickets):
    ticket = tickets["free"]

    single = admin_client.post(f"{CHANGELIST}{ticket.id}/delete/", {"post": "yes"})
    bulk = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [ticket.id], "post": "yes"}, follow=True
    )

    assert single.status_code == 403
    assert bulk.status_code == 200
    assert Ticket.objects.filter(id=ticket.id).exists()


def test_prices_show_as_the_api_prints_them(admin_client, tickets):
    changelist = admin_client.get("/api/orders/admin/tickets_replica/ticket/").content.decode()
    held = admin_client.get(f"/api/orders/admin/tickets_replica/ticket/{tickets['held'].id}/change/")

    assert ">20<" in row(changelist, tickets["held"]) and "20.0" not in changelist
    assert ">10.5<" in row(changelist, tickets["free"])
    assert "20.0" not in held.content.decode()
