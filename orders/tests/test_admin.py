"""The orders admin: list, filters, search, dates, a read-only order page, and the cancel action."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from messaging.models import OutboxEvent
from messaging.order_status import OrderStatus
from orders import admin as orders_admin
from orders.models import Order

pytestmark = pytest.mark.django_db

CHANGELIST = "/api/orders/admin/orders/order/"


def change_url(order: Order) -> str:
    return f"{CHANGELIST}{order.id}/change/"


def make_order(ticket, *, status: str = OrderStatus.CREATED, user_id: str = "user-1", created_at=None) -> Order:
    order = Order.objects.create(
        user_id=user_id, ticket=ticket, status=status, expires_at=timezone.now() + dt.timedelta(minutes=15)
    )
    if created_at is not None:
        # auto_now_add ignores a value given to create().
        Order.objects.filter(id=order.id).update(created_at=created_at)
    return order


def listed(response) -> set[str]:
    """The ids of the orders the changelist shows."""
    assert response.status_code == 200
    return {order.id for order in response.context["cl"].result_list}


def state(order: Order) -> tuple[str, int]:
    return tuple(Order.objects.filter(id=order.id).values_list("status", "version").get())


@pytest.fixture
def orders(make_ticket):
    """Four orders of two users, one in each status, on four tickets, made in different months."""
    return {
        "created": make_order(
            make_ticket(title="concert"), user_id="alice", created_at=dt.datetime(2024, 3, 5, 12, tzinfo=dt.UTC)
        ),
        "awaiting": make_order(
            make_ticket(title="opera"),
            status=OrderStatus.AWAITING_PAYMENT,
            user_id="alice",
            created_at=dt.datetime(2024, 4, 6, 12, tzinfo=dt.UTC),
        ),
        "complete": make_order(
            make_ticket(title="football final"),
            status=OrderStatus.COMPLETE,
            user_id="bob",
            created_at=dt.datetime(2025, 1, 7, 12, tzinfo=dt.UTC),
        ),
        "cancelled": make_order(
            make_ticket(title="concert encore"),
            status=OrderStatus.CANCELLED,
            user_id="bob",
            created_at=dt.datetime(2025, 1, 8, 12, tzinfo=dt.UTC),
        ),
    }


def ids(orders: dict[str, Order], *names: str) -> set[str]:
    return {orders[name].id for name in names}


# --- the list -----------------------------------------------------------------------------------


def test_the_admin_is_for_staff_only(client, orders):
    response = client.get(CHANGELIST)

    assert response.status_code == 302
    assert response["Location"].startswith("/api/orders/admin/login/")


def test_changelist_shows_every_order_with_its_ticket(admin_client, orders):
    response = admin_client.get(CHANGELIST)

    assert listed(response) == ids(orders, "created", "awaiting", "complete", "cancelled")
    html = response.content.decode()
    for order in orders.values():
        assert order.id in html
        assert order.ticket.title in html
        assert order.ticket_id in html
    # The columns, the status filter and the date drill-down are all there.
    for column in ("column-user_id", "column-status", "column-ticket_title", "column-expires_at"):
        assert column in html
    assert "By status" in html


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("created", {"created"}),
        ("awaiting:payment", {"awaiting"}),
        ("complete", {"complete"}),
        ("cancelled", {"cancelled"}),
    ],
)
def test_the_status_filter_keeps_only_that_status(admin_client, orders, status, expected):
    response = admin_client.get(CHANGELIST, {"status__exact": status})

    assert listed(response) == ids(orders, *expected)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("alice", {"created", "awaiting"}),  # user id
        ("bob", {"complete", "cancelled"}),
        ("concert", {"created", "cancelled"}),  # ticket title, partly
        ("football final", {"complete"}),
        ("nobody-has-this", set()),
    ],
)
def test_search_by_user_id_and_ticket_title(admin_client, orders, query, expected):
    response = admin_client.get(CHANGELIST, {"q": query})

    assert listed(response) == ids(orders, *expected)


def test_search_by_ticket_id_and_order_id(admin_client, orders):
    opera = orders["awaiting"]

    assert listed(admin_client.get(CHANGELIST, {"q": opera.ticket_id})) == {opera.id}
    assert listed(admin_client.get(CHANGELIST, {"q": orders["complete"].id})) == {orders["complete"].id}


def test_date_hierarchy_drills_down_by_creation_date(admin_client, orders):
    years = admin_client.get(CHANGELIST)
    assert "created_at__year=2024" in years.content.decode()
    assert "created_at__year=2025" in years.content.decode()

    assert listed(admin_client.get(CHANGELIST, {"created_at__year": "2024"})) == ids(orders, "created", "awaiting")
    assert listed(admin_client.get(CHANGELIST, {"created_at__year": "2024", "created_at__month": "4"})) == ids(
        orders, "awaiting"
    )
    assert listed(
        admin_client.get(CHANGELIST, {"created_at__year": "2025", "created_at__month": "1", "created_at__day": "8"})
    ) == ids(orders, "cancelled")


# --- one order ----------------------------------------------------------------------------------


def test_an_order_page_is_read_only_and_shows_the_ticket(admin_client, orders):
    order = orders["created"]

    response = admin_client.get(change_url(order))

    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    html = response.content.decode()
    assert "View order" in html
    assert 'name="_save"' not in html
    for field in ("user_id", "status", "expires_at", "ticket", "version"):
        assert f'name="{field}"' not in html
    # The ticket, as a link to its (read-only) replica page.
    assert f"concert ({order.ticket_id})" in html
    assert f"/api/orders/admin/tickets_replica/ticket/{order.ticket_id}/change/" in html


def test_an_order_cannot_be_edited_added_or_deleted_through_the_admin(admin_client, orders):
    order = orders["created"]

    edit = admin_client.post(change_url(order), {"user_id": "mallory", "status": "complete", "version": 7})
    add = admin_client.get(f"{CHANGELIST}add/")
    delete = admin_client.post(f"{CHANGELIST}{order.id}/delete/", {"post": "yes"})

    assert (edit.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    assert Order.objects.filter(id=order.id).values_list("user_id", "status", "version").get() == (
        "alice",
        "created",
        0,
    )


# --- the cancel action --------------------------------------------------------------------------


def cancel(client: Client, orders: list[Order]):
    return client.post(CHANGELIST, {"action": "cancel_orders", "_selected_action": [o.id for o in orders]}, follow=True)


def test_cancel_action_cancels_through_the_service_and_writes_one_event_per_cancelled_order(
    admin_client, orders, monkeypatch
):
    calls = []
    real_order_cancel = orders_admin.order_cancel

    def spy(*, order_id):
        calls.append(order_id)
        return real_order_cancel(order_id=order_id)

    monkeypatch.setattr(orders_admin, "order_cancel", spy)

    response = cancel(admin_client, list(orders.values()))

    assert response.status_code == 200
    assert sorted(calls) == sorted(o.id for o in orders.values())
    assert state(orders["created"]) == ("cancelled", 1)
    assert state(orders["awaiting"]) == ("cancelled", 1)
    assert state(orders["complete"]) == ("complete", 0)
    assert state(orders["cancelled"]) == ("cancelled", 0)
    events = sorted(OutboxEvent.objects.values_list("subject", "payload"), key=lambda event: event[1]["id"])
    assert events == sorted(
        [
            ("order:cancelled", {"id": order.id, "version": 1, "ticket": {"id": order.ticket_id}})
            for order in (orders["created"], orders["awaiting"])
        ],
        key=lambda event: event[1]["id"],
    )
    assert [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)] == [
        ("success", "Cancelled 2 order(s)."),
        ("info", "1 already cancelled."),
        ("warning", "1 complete order(s) not cancelled."),
    ]


def test_cancelling_again_changes_nothing_and_writes_nothing(admin_client, orders):
    cancel(admin_client, [orders["created"]])

    response = cancel(admin_client, [orders["created"]])

    assert state(orders["created"]) == ("cancelled", 1)
    assert OutboxEvent.objects.count() == 1
    assert [m.message for m in get_messages(response.wsgi_request)] == [
        "Cancelled 0 order(s).",
        "1 already cancelled.",
    ]


def test_cancelling_releases_the_ticket(admin_client, orders):
    ticket = orders["awaiting"].ticket
    assert ticket.is_reserved()

    cancel(admin_client, [orders["awaiting"]])

    assert not ticket.is_reserved()


def test_staff_who_may_only_view_orders_cannot_cancel_them(orders, django_user_model):
    viewer = django_user_model.objects.create_user(username="viewer", password="pw-0123456789", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    client = Client()
    client.force_login(viewer)

    page = client.get(CHANGELIST)
    response = cancel(client, [orders["created"]])

    assert listed(page) == ids(orders, "created", "awaiting", "complete", "cancelled")
    assert "cancel_orders" not in page.content.decode()
    assert response.status_code == 200
    assert state(orders["created"]) == ("created", 0)
    assert OutboxEvent.objects.count() == 0
