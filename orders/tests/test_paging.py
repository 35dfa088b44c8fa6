"""GET /api/orders?limit=N&after=<order id>: keyset pages of the caller's orders (contract section 2)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from core.ids import new_object_id
from messaging.order_status import OrderStatus
from orders.models import Order
from orders.representation import render_json

pytestmark = pytest.mark.django_db

LIMIT_ERROR = {"errors": [{"message": "limit must be a whole number from 1 to 1000", "field": "limit"}]}
AFTER_ERROR = {"errors": [{"message": "after must be an order id (24 hex)", "field": "after"}]}
UNKNOWN_AFTER = {"errors": [{"message": "after must be the id of one of your orders", "field": "after"}]}
LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def make_orders(make_ticket, user_id: str, count: int, *, same_time: int = 0) -> list[Order]:
    """`count` orders of `user_id`; `same_time` of them share one created_at, so only the id orders them."""
    now = timezone.now()
    statuses = OrderStatus.values
    orders = [
        Order.objects.create(
            user_id=user_id,
            ticket=make_ticket(price=10.5 if index % 2 else 20),
            status=statuses[index % len(statuses)] if index % 5 else OrderStatus.CANCELLED,
            expires_at=now,
        )
        for index in range(count)
    ]
    for index, order in enumerate(orders):
        # Created out of id order, and some at the very same instant.
        created_at = now - dt.timedelta(seconds=0 if index < same_time else index * 7 % count)
        Order.objects.filter(id=order.id).update(created_at=created_at)
    return orders


def walk(client: APIClient, limit: int, path: str = "/api/orders") -> tuple[list[dict], list[str]]:
    """Follow the Link headers from the first page; every order seen and every URL fetched."""
    url, seen, urls = f"{path}?limit={limit}", [], []
    while url:
        urls.append(url)
        response = client.get(url)
        assert response.status_code == 200, response.content
        page = response.json()
        assert isinstance(page, list) and len(page) <= limit
        seen.extend(page)
        link = response.headers.get("Link")
        if link is None:
            break
        assert len(page) == limit
        url = LINK.fullmatch(link)["url"]
        assert url == f"{path}?limit={limit}&after={page[-1]['id']}"
        assert len(urls) < 100
    return seen, urls


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 23, 24, 1000])
def test_walking_every_page_gives_the_unpaged_list(signed_in, other_user, make_ticket, limit):
    make_orders(make_ticket, signed_in.user_id, 23, same_time=6)
    make_orders(make_ticket, other_user.user_id, 9, same_time=3)
    everything = signed_in.get("/api/orders").json()
    assert len(everything) == 23

    seen, urls = walk(signed_in, limit)

    assert seen == everything
    assert len(urls) == -(-23 // limit)


def test_the_unpaged_list_is_in_created_at_then_id_order(signed_in, make_ticket):
    orders = make_orders(make_ticket, signed_in.user_id, 12, same_time=5)
    expected = sorted(orders, key=lambda o: (Order.objects.get(id=o.id).created_at, o.id))

    response = signed_in.get("/api/orders")

    assert [o["id"] for o in response.json()] == [o.id for o in expected]
    assert "Link" not in response.headers


def test_link_only_while_more_remain(signed_in, make_ticket):
    orders = make_orders(make_ticket, signed_in.user_id, 4)
    ids = [o["id"] for o in signed_in.get("/api/orders").json()]
    assert sorted(ids) == sorted(o.id for o in orders)

    first = signed_in.get("/api/orders?limit=3")
    exact = signed_in.get("/api/orders?limit=4")
    last = signed_in.get(f"/api/orders?limit=3&after={ids[2]}")
    past_the_end = signed_in.get(f"/api/orders?limit=3&after={ids[3]}")

    assert [o["id"] for o in first.json()] == ids[:3]
    assert first.headers["Link"] == f'</api/orders?limit=3&after={ids[2]}>; rel="next"'
    assert ([o["id"] for o in exact.json()], exact.headers.get("Link")) == (ids, None)
    assert ([o["id"] for o in last.json()], last.headers.get("Link")) == (ids[3:], None)
    assert (past_the_end.status_code, past_the_end.json(), past_the_end.headers.get("Link")) == (200, [], None)


def test_a_page_is_byte_for_byte_a_slice_of_the_list(signed_in, make_ticket):
    make_orders(make_ticket, signed_in.user_id, 5)
    everything = signed_in.get("/api/orders")
    ids = [o["id"] for o in everything.json()]

    page = signed_in.get(f"/api/orders/?limit=2&after={ids[0].upper()}")

    assert page.json() == everything.json()[1:3]
    assert page.content == render_json(everything.json()[1:3])
    assert page.headers["Content-Type"] == everything.headers["Content-Type"] == "application/json"
    # The trailing slash the client used is kept in the next link.
    assert page.headers["Link"] == f'</api/orders/?limit=2&after={ids[2]}>; rel="next"'


def test_after_alone_gives_every_order_after_it(signed_in, make_ticket):
    make_orders(make_ticket, signed_in.user_id, 5)
    ids = [o["id"] for o in signed_in.get("/api/orders").json()]

    response = signed_in.get(f"/api/orders?after={ids[1]}")

    assert ([o["id"] for o in response.json()], response.headers.get("Link")) == (ids[2:], None)


def test_with_no_orders_a_page_is_empty(signed_in):
    response = signed_in.get("/api/orders?limit=10")

    assert (response.status_code, response.json(), response.headers.get("Link")) == (200, [], None)


BAD_LIMITS = [
    "limit=0",
    "limit=1001",
    "limit=-1",
    "limit=+5",
    "limit=5.0",
    "limit=1e2",
    "limit=abc",
    "limit=",
    "limit",
    "limit=%205",
    "limit=5%20",
    "limit=%EF%BC%95",  # fullwidth 5
    "limit=99999999999999999999999",
    "limit=" + "9" * 5000,
    "limit=00001",
    "limit=5&limit=5",
    "limit=5&limit=6",
]
BAD_AFTERS = [
    "",
    "abc",
    "65f0c0ffee0000000000abc",
    "65f0c0ffee0000000000abcde",
    "zzzzzzzzzzzzzzzzzzzzzzzz",
    "%2065f0c0ffee0000000000abcd",
]


@pytest.mark.parametrize(
    ("query", "error"),
    [(query, LIMIT_ERROR) for query in BAD_LIMITS] + [(f"limit=5&after={after}", AFTER_ERROR) for after in BAD_AFTERS],
)
def test_a_bad_limit_or_after_is_400_without_a_link(signed_in, make_ticket, query, error):
    make_orders(make_ticket, signed_in.user_id, 2)

    response = signed_in.get(f"/api/orders?{query}")

    assert (response.status_code, response.json()) == (400, error)
    assert "Link" not in response.headers


def test_a_repeated_after_is_400(signed_in, make_ticket):
    ids = [o.id for o in make_orders(make_ticket, signed_in.user_id, 2)]

    response = signed_in.get(f"/api/orders?after={ids[0]}&after={ids[0]}")

    assert (response.status_code, response.json()) == (400, AFTER_ERROR)


def test_limit_is_checked_before_after(signed_in):
    response = signed_in.get("/api/orders?limit=0&after=zz")

    assert (response.status_code, response.json()) == (400, LIMIT_ERROR)


@pytest.mark.parametrize("limit", ["", "limit=2&"])
def test_an_unknown_order_id_as_after_is_400(signed_in, make_ticket, limit):
    make_orders(make_ticket, signed_in.user_id, 3)

    response = signed_in.get(f"/api/orders?{limit}after={new_object_id()}")

    assert (response.status_code, response.json()) == (400, UNKNOWN_AFTER)


@pytest.mark.parametrize("limit", ["", "limit=2&"])
def test_someone_elses_order_id_as_after_is_answered_like_an_unknown_one(signed_in, other_user, make_ticket, limit):
    mine = make_orders(make_ticket, signed_in.user_id, 3)
    theirs = make_orders(make_ticket, other_user.user_id, 3)
    # Their oldest order: any leak of their list would show here.
    oldest_of_theirs = other_user.get("/api/orders").json()[0]["id"]

    response = signed_in.get(f"/api/orders?{limit}after={oldest_of_theirs}")

    assert (response.status_code, response.json()) == (400, UNKNOWN_AFTER)
    assert not any(order.id.encode() in response.content for order in theirs)
    # Their id does not work as a position in my list either: my pages are unchanged.
    assert walk(signed_in, 2)[0] == signed_in.get("/api/orders").json()
    assert {o.id for o in mine} == {o["id"] for o in signed_in.get("/api/orders").json()}


def test_paging_needs_signing_in(signed_in, make_ticket):
    ids = [o.id for o in make_orders(make_ticket, signed_in.user_id, 2)]

    response = APIClient().get(f"/api/orders?limit=1&after={ids[0]}")

    assert (response.status_code, response.json()) == (401, {"errors": [{"message": "Not authorized"}]})


def test_unknown_query_parameters_are_ignored_as_before(signed_in, make_ticket):
    make_orders(make_ticket, signed_in.user_id, 3)

    response = signed_in.get("/api/orders?page=2&offset=1&foo")

    assert (response.status_code, response.content) == (200, signed_in.get("/api/orders").content)
    assert "Link" not in response.headers


def test_the_list_query_is_one_range_of_the_index_on_sqlite(signed_in, make_ticket):
    """EXPLAIN: the page is read from (user_id, created_at, id) in order, with no sort step."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's plan; PostgreSQL's is in docs/profiles/http.md")
    from orders import selectors

    ids = [o.id for o in make_orders(make_ticket, signed_in.user_id, 3)]
    sql = (
        selectors._ORDERS_OF_USER["sqlite"] + selectors._AFTER_CURSOR + selectors._OLDEST_FIRST + selectors._LIMIT
    ).replace("%s", "?")
    with connection.cursor() as cursor:
        plan = cursor.connection.execute(
            f"EXPLAIN QUERY PLAN {sql}", [signed_in.user_id, ids[0], signed_in.user_id, 10]
        ).fetchall()
    details = [row[-1] for row in plan]

    # A range that starts at the cursor (not a scan of the user's earlier orders), read in index order.
    assert any("USING INDEX order_user_created_id_idx (user_id=? AND created_at>" in d for d in details), details
    assert not any("TEMP B-TREE" in d for d in details), details


def test_the_openapi_document_describes_the_paging_parameters(client):
    import yaml

    response = client.get("/api/orders/schema/")
    operation = yaml.safe_load(response.content)["paths"]["/api/orders"]["get"]

    parameters = {p["name"]: p for p in operation["parameters"]}
    assert set(parameters) == {"limit", "after"}
    assert {p["in"] for p in parameters.values()} == {"query"}
    assert not any(p.get("required") for p in parameters.values())
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert parameters["after"]["schema"] == {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"}
    assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Errors"
    }
    assert 'rel="next"' in parameters["limit"]["description"]
    assert "someone else's" in parameters["after"]["description"]
