"""Request bodies: the size limit (413) on every path, Django-level refusals in the errors shape, chunked bodies."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from orders.models import Order
from tests.server.support import Server
from testsupport.http import chunked
from testsupport.testrun import call_wsgi, wsgi_environ

pytestmark = pytest.mark.django_db

BASE_DIR = Path(settings.BASE_DIR)
TOO_LARGE = {"errors": [{"message": "Request body too large"}]}
BAD_REQUEST = {"errors": [{"message": "Bad Request"}]}
NOT_AUTHORIZED = {"errors": [{"message": "Not authorized"}]}
NOT_FOUND = {"errors": [{"message": "Not Found"}]}
LIMIT = settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def order_body(ticket_id: str, size: int) -> bytes:
    """A valid order body padded with an ignored field to `size` bytes."""
    head = json.dumps({"ticketId": ticket_id, "padding": ""}).encode()
    return head[:-2] + b"x" * (size - len(head)) + head[-2:]


@pytest.mark.parametrize("size", [LIMIT - 1024, LIMIT])
def test_a_body_up_to_the_limit_is_read(signed_in, make_ticket, size):
    ticket = make_ticket()

    response = signed_in.generic("POST", "/api/orders", order_body(ticket.id, size), "application/json")

    assert response.status_code == 201, response.content[:200]


@pytest.mark.parametrize("size", [LIMIT + 1, 3 * 1024 * 1024])
def test_a_body_over_the_limit_is_413_from_a_signed_in_client(signed_in, make_ticket, size):
    ticket = make_ticket()

    response = signed_in.generic("POST", "/api/orders/", order_body(ticket.id, size), "application/json")

    assert (response.status_code, response.json()) == (413, TOO_LARGE)
    assert not Order.objects.exists()


def test_a_big_body_without_credentials_is_401_unread():
    response = APIClient().generic("POST", "/api/orders", b"{" + b" " * (3 * LIMIT) + b"}", "application/json")

    assert (response.status_code, response.json()) == (401, NOT_AUTHORIZED)


@pytest.mark.parametrize("path", ["/api/nothing-here", "/"])
def test_a_big_body_to_an_unknown_route_is_404(signed_in, path):
    response = signed_in.generic("POST", path, b"x" * (3 * LIMIT), "application/json")

    assert (response.status_code, response.json()) == (404, NOT_FOUND)


def test_a_content_length_over_the_limit_is_413_even_when_the_body_is_short(signed_in, make_ticket):
    body = json.dumps({"ticketId": make_ticket().id}).encode()

    response = signed_in.generic(
        "POST", "/api/orders", body, "application/json", CONTENT_LENGTH=str(LIMIT + 1), HTTP_CONTENT_LENGTH=None
    )

    assert (response.status_code, response.json()) == (413, TOO_LARGE)


@pytest.mark.parametrize("content_length", ["-5", "abc", "1e9", ""])
def test_a_content_length_that_is_not_a_length_reads_no_body(signed_in, make_ticket, content_length):
    body = json.dumps({"ticketId": make_ticket().id}).encode()

    response = signed_in.generic("POST", "/api/orders", body, "application/json", CONTENT_LENGTH=content_length)

    assert (response.status_code, response.json()) == (
        400,
        {"errors": [{"message": "TicketId must be provided", "field": "ticketId"}]},
    )


def test_a_content_length_shorter_than_the_body_reads_only_that_much(signed_in, make_ticket):
    body = json.dumps({"ticketId": make_ticket().id}).encode()

    response = signed_in.generic("POST", "/api/orders", body + b" " * 1000, "application/json", CONTENT_LENGTH="10")

    assert (response.status_code, response.json()) == (400, {"errors": [{"message": "Malformed JSON body"}]})


# --- Django-level refusals (outside DRF's views) ---------------------------------------------------


def test_a_big_form_to_the_admin_login_is_413():
    response = Client().post(
        "/api/orders/admin/login/", b"username=a&password=" + b"x" * (LIMIT + 1), "application/x-www-form-urlencoded"
    )

    assert (response.status_code, response.json()) == (413, TOO_LARGE)


def test_too_many_form_fields_to_the_admin_login_is_400():
    body = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))

    response = Client().post("/api/orders/admin/login/", body, "application/x-www-form-urlencoded")

    assert (response.status_code, response.json()) == (400, BAD_REQUEST)


def test_too_many_files_to_the_admin_login_is_400(settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = {f"f{i}": io.BytesIO(b"x") for i in range(3)}

    response = Client().post("/api/orders/admin/login/", {"username": "a", **files})

    assert (response.status_code, response.json()) == (400, BAD_REQUEST)


def test_too_many_query_fields_on_the_api_is_400(signed_in):
    query = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))

    response = signed_in.get(f"/api/orders?{query}")

    assert (response.status_code, response.json()) == (400, BAD_REQUEST)


def test_a_disallowed_host_on_the_admin_is_400():
    response = Client().get("/api/orders/admin/login/", headers={"host": "evil.example.com"})

    assert (response.status_code, response.json()) == (400, BAD_REQUEST)


# --- chunked bodies, in process ------------------------------------------------------------------


def call_chunked(environ_extra: dict, body: bytes) -> tuple[str, dict]:
    """One chunked request through ticketing_orders.wsgi, the application the servers serve."""
    from ticketing_orders.wsgi import application

    environ = wsgi_environ("POST", body=body, **{"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"})
    del environ["CONTENT_LENGTH"]
    status, _, content = call_wsgi(application, {**environ, **environ_extra})
    return status, json.loads(content)


def test_a_chunked_body_is_read_like_any_other(make_user, make_ticket):
    user_id, cookie = make_user()
    ticket = make_ticket()

    status, body = call_chunked({"HTTP_COOKIE": cookie}, json.dumps({"ticketId": ticket.id}).encode())

    assert status == "201 Created", body
    assert (body["userId"], body["ticket"]["id"]) == (user_id, ticket.id)


def test_a_chunked_body_over_the_limit_is_413(make_user, make_ticket):
    _, cookie = make_user()

    status, body = call_chunked({"HTTP_COOKIE": cookie}, order_body(make_ticket().id, LIMIT + 1))

    assert (status, body) == ("413 Request Entity Too Large", TOO_LARGE)
    assert not Order.objects.exists()


def test_a_chunked_body_is_not_read_past_the_limit(make_user, make_ticket):
    _, cookie = make_user()
    stream = io.BytesIO(b"x" * (5 * LIMIT))

    call_chunked({"HTTP_COOKIE": cookie, "wsgi.input": stream}, b"")

    assert stream.tell() == LIMIT + 1


def test_a_body_without_length_is_not_read_unless_the_server_ends_it(make_user, make_ticket):
    """Without wsgi.input_terminated, reading to the end could block on the connection's next request."""
    _, cookie = make_user()

    status, body = call_chunked(
        {"HTTP_COOKIE": cookie, "wsgi.input_terminated": False}, json.dumps({"ticketId": make_ticket().id}).encode()
    )

    assert (status, body) == (
        "400 Bad Request",
        {"errors": [{"message": "TicketId must be provided", "field": "ticketId"}]},
    )


def test_a_chunked_body_the_server_cannot_read_is_a_4xx(make_user):
    _, cookie = make_user()

    class BrokenInput:
        def read(self, size=-1):
            raise ValueError("Invalid chunk size")  # what a server's reader raises is its own type

        readline = read

    status, _ = call_chunked({"HTTP_COOKIE": cookie, "wsgi.input": BrokenInput()}, b"")

    assert status.startswith("400"), status


# --- through the real servers: granian (the default) and gunicorn ------------------------------------


def http(port: int, request: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Send raw bytes, read the whole response (the request says Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return int(head.split(b" ", 2)[1]), body


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def chunked_request(path: str, body: bytes, cookie: str, chunk_size: int = 7) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + chunked(body, chunk_size)


@pytest.fixture(scope="module", params=["granian", "gunicorn"])
def api_server(request, tmp_path_factory) -> Iterator[tuple[int, str, str, Server]]:
    """The default server (`python -m ticketing_orders.server`: granian), then `gunicorn -c gunicorn.conf.py
    ticketing_orders.wsgi`, on a migrated site of its own with one ticket: reading a body must not depend on
    the server."""
    ticket_id = "65f0c0ffee0000000000abc0"
    with Server(tmp_path_factory.mktemp(request.param), request.param, WEB_CONCURRENCY="1").running() as server:
        setup = (
            "import django; django.setup()\n"
            "from tickets_replica.models import Ticket\n"
            f"Ticket.objects.create(id={ticket_id!r}, title='concert', price=20, version=0)\n"
        )
        made = subprocess.run(
            [sys.executable, "-c", setup], cwd=BASE_DIR, env=server.env, capture_output=True, text=True, timeout=180
        )
        assert made.returncode == 0, made.stderr
        yield server.port, server.cookie, ticket_id, server


@pytest.mark.django_db(False)
def test_the_server_serves_the_signed_in_api(api_server):
    port, cookie, _, server = api_server
    request = f"GET /api/orders HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"

    status, body = http(port, request.encode())

    assert status == 200, server.log()[-3000:]
    assert all(order["userId"] == server.user_id for order in json.loads(body))


@pytest.mark.django_db(False)
def test_the_server_reads_a_chunked_body(api_server):
    port, cookie, ticket_id, server = api_server

    status, body = http(port, chunked_request("/api/orders", json.dumps({"ticketId": ticket_id}).encode(), cookie))

    assert status == 201, (body, server.log()[-3000:])
    assert json.loads(body)["ticket"]["id"] == ticket_id


@pytest.mark.django_db(False)
def test_the_server_answers_413_to_a_chunked_body_over_the_limit(api_server):
    port, cookie, ticket_id, server = api_server

    status, body = http(port, chunked_request("/api/orders", order_body(ticket_id, LIMIT + 10), cookie, 65536))

    assert (status, json.loads(body)) == (413, TOO_LARGE), server.log()[-3000:]


@pytest.mark.django_db(False)
def test_the_server_answers_a_broken_chunked_body_with_a_4xx(api_server):
    port, cookie, _, server = api_server
    request = chunked_request("/api/orders", b'{"ticketId": "x"}', cookie).replace(b"\r\n7\r\n", b"\r\nzz\r\n", 1)

    status, _ = http(port, request)

    assert 400 <= status < 500, server.log()[-3000:]
