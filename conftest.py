"""Fixtures shared by every test: API client, signed-in users, tickets, a real nats-server."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from common.ids import new_object_id
from common.management.commands.mint_token import session_cookie_value
from tickets_replica.models import Ticket


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def make_user():
    """Return a function making (user_id, cookie header value) for a fresh random user."""

    def make(user_id: str | None = None) -> tuple[str, str]:
        user_id = user_id or new_object_id()
        return user_id, f"session={session_cookie_value(user_id=user_id, email=f'{user_id}@test.com')}"

    return make


@pytest.fixture
def signed_in(make_user) -> APIClient:
    """An API client carrying a session cookie for a fresh random user (`.user_id` says who)."""
    user_id, cookie = make_user()
    client = APIClient(HTTP_COOKIE=cookie)
    client.user_id = user_id
    return client


@pytest.fixture
def make_ticket(db):
    def make(**fields) -> Ticket:
        values = {"id": new_object_id(), "title": "concert", "price": 20, "version": 0, **fields}
        return Ticket.objects.create(**values)

    return make
