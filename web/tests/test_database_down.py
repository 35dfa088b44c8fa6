"""While the database cannot be reached: 503 `Service unavailable` in the errors shape, on every path that needs it."""

from __future__ import annotations

import copy

import pytest
from django.db import connections
from django.test import Client

from core.ids import new_object_id
from testsupport.http import API_ROUTES
from testsupport.processes import free_port

UNAVAILABLE = {"errors": [{"message": "Service unavailable"}]}


@pytest.fixture
def unreachable_database(django_db_blocker, tmp_path):
    """The default connection pointed at a database that is not there: a closed port, or a missing folder.

    A real connection attempt fails as it would in production (connection refused; SQLite cannot
    open the file); nothing is mocked.
    """
    connection = connections["default"]
    saved = copy.deepcopy(connection.settings_dict)
    # PostgreSQL with OPTIONS["pool"]: the process's psycopg pool keeps its open connections to the
    # real server; set it aside so a new pool is made for the unreachable address.
    pools = getattr(type(connection), "_connection_pools", {})
    with django_db_blocker.unblock():
        connection.close()
        saved_pool = pools.pop(connection.alias, None)
        if connection.vendor == "sqlite":
            connection.settings_dict["NAME"] = str(tmp_path / "no-such-folder" / "orders.sqlite3")
        else:
            connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
            if pool_options := connection.settings_dict.get("OPTIONS", {}).get("pool"):
                # The pool waits this long for a connection before giving up (the deployment's own wait).
                connection.settings_dict["OPTIONS"]["pool"] = {**pool_options, "min_size": 0, "timeout": 0.5}
        try:
            yield
        finally:
            connection.close()
            if (unreachable_pool := pools.pop(connection.alias, None)) is not None:
                unreachable_pool.close()
            if saved_pool is not None:
                pools[connection.alias] = saved_pool
            connection.settings_dict.clear()
            connection.settings_dict.update(saved)


@pytest.fixture
def client(make_user) -> Client:
    """A signed-in client that answers with responses, never with the server's exception."""
    _, cookie = make_user()
    return Client(raise_request_exception=False, HTTP_COOKIE=cookie)


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.content[:500]
    assert response.json() == UNAVAILABLE
    assert b"Traceback" not in response.content


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_the_api_answers_503_while_the_database_is_unreachable(unreachable_database, client, method, path):
    response = getattr(client, method)(path, {"ticketId": new_object_id()}, content_type="application/json")

    assert_unavailable(response)


def test_the_admin_answers_503_while_the_database_is_unreachable(unreachable_database, client):
    # A session cookie makes the session middleware read the database.
    response = client.get("/api/orders/admin/", HTTP_COOKIE="sessionid=abcdefghijklmnopqrstuvwxyz012345")

    assert_unavailable(response)


def test_an_admin_login_answers_503_while_the_database_is_unreachable(unreachable_database, client):
    response = client.post("/api/orders/admin/login/", {"username": "admin", "password": "secret"})

    assert_unavailable(response)


def test_readiness_is_503_and_liveness_200_while_the_database_is_unreachable(unreachable_database, client):
    ready, live = client.get("/readyz"), client.get("/healthz")

    assert (ready.status_code, ready.json()["status"]) == (503, "unavailable")
    assert (live.status_code, live.json()["status"]) == (200, "ok")


def test_requests_that_need_no_database_still_answer(unreachable_database):
    anonymous = Client(raise_request_exception=False)

    assert anonymous.get("/api/orders").status_code == 401
    assert anonymous.get("/api/nothing-here").status_code == 404
    assert anonymous.get("/api/orders/schema/").status_code == 200


@pytest.mark.django_db
def test_the_service_answers_again_once_the_database_is_back(client):
    assert client.get("/api/orders").status_code == 200
