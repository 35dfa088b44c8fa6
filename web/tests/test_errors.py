"""Every failure answers `{"errors": [...]}`, and nothing a client sends produces a 500."""

from __future__ import annotations

import io
import json
import random
import string

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import Client, RequestFactory
from rest_framework import exceptions
from rest_framework.test import APIClient

from core.ids import new_object_id
from orders.models import Order
from web.errors import exception_handler
from web.handlers import is_usable_charset
from web.views import server_error

pytestmark = pytest.mark.django_db

NOT_FOUND = {"errors": [{"message": "Not Found"}]}
TICKET_ID_REQUIRED = {"errors": [{"message": "TicketId must be provided", "field": "ticketId"}]}
MALFORMED_JSON = {"errors": [{"message": "Malformed JSON body"}]}
SOMETHING_WENT_WRONG = {"errors": [{"message": "Something went wrong"}]}

UNKNOWN_PATHS = [
    "/",
    "/api",
    "/api/",
    "/api/order",
    "/api/ordersx",
    "/api/orders//",
    "/api/orders/65f0c0ffee0000000000abcd/extra",
    "/api/orders/a/b/c/",
    "/api/tickets",
    "/api/users/currentuser",
    "/65f0c0ffee0000000000abcd",
    "/healthz/extra",
    "/api/orders/static/nope.css",
]
METHODS = ["get", "post", "put", "patch", "delete", "options"]


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("as_user", [False, True], ids=["anonymous", "signed-in"])
def test_unknown_route_is_404_not_found_for_any_method(signed_in, path, method, as_user):
    client = signed_in if as_user else APIClient()

    response = getattr(client, method)(path, {"ticketId": new_object_id()}, format="json")

    assert response.status_code == 404, response.content
    assert response.json() == NOT_FOUND


def test_unknown_route_with_an_unusual_method_is_404(signed_in):
    response = signed_in.generic("PROPFIND", "/api/nothing-here")

    assert (response.status_code, response.json()) == (404, NOT_FOUND)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "TRACE", "PROPFIND"])
@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/orders", "GET, POST, HEAD, OPTIONS"),
        ("/api/orders/", "GET, POST, HEAD, OPTIONS"),
        ("/api/orders/65f0c0ffee0000000000abcd", "GET, DELETE, HEAD, OPTIONS"),
    ],
)
def test_unsupported_method_is_405_in_the_errors_shape(signed_in, method, path, allow):
    response = signed_in.generic(method, path, json.dumps({"ticketId": new_object_id()}), "application/json")

    assert response.status_code == 405
    assert response.json() == {"errors": [{"message": f'Method "{method}" not allowed.'}]}
    assert response["Allow"] == allow


def test_unsupported_method_is_401_before_405_when_not_signed_in():
    response = APIClient().put("/api/orders", {}, format="json")

    assert (response.status_code, response.json()) == (401, {"errors": [{"message": "Not authorized"}]})


@pytest.mark.parametrize(
    ("content_type", "named"),
    [
        ("text/plain", "text/plain"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        # The type alone: the boundary, or any other parameter, is the client's and not said back.
        ("multipart/form-data; boundary=xyz", "multipart/form-data"),
        ("text/plain; charset=utf-8; secret=<script>", "text/plain"),
        ("application/xml", "application/xml"),
        ("application/json-patch+json", "application/json-patch+json"),
        ("text/json", "text/json"),
        ("", ""),
        ("<script>alert(1)</script>", ""),
        ("text/" + "x" * 200, ""),
    ],
)
def test_body_that_is_not_application_json_is_415(signed_in, content_type, named):
    response = signed_in.generic("POST", "/api/orders", b'{"ticketId": "65f0c0ffee0000000000abcd"}', content_type)

    assert response.status_code == 415, response.content
    assert response.json() == {"errors": [{"message": f'Unsupported media type "{named}" in request.'}]}


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"}",
        b"{'ticketId': '65f0c0ffee0000000000abcd'}",
        b'{"ticketId": }',
        b'{"ticketId": "65f0c0ffee0000000000abcd"} trailing',
        b'{"ticketId": "65f0c0ffee0000000000abcd",}',
        b"undefined",
        b"NaN",
        b'{"ticketId": NaN}',
        b'{"ticketId": Infinity}',
        b'{"ticketId": -Infinity}',
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"ticketId": "\xff\xfe"}',
        b"\xff\xfe{\x00}\x00",
        b"\x00",
        b'{"ticketId": "\\ud800"',
    ],
    ids=lambda body: repr(body[:30]),
)
def test_malformed_json_is_400(signed_in, body):
    response = signed_in.generic("POST", "/api/orders", body, "application/json")

    assert response.status_code == 400, response.content
    assert response.json() == MALFORMED_JSON


@pytest.mark.parametrize("charset", ["utf-16", "utf-32"])
def test_json_in_a_real_but_wrong_declared_charset_is_400(signed_in, charset):
    response = signed_in.generic(
        "POST", "/api/orders", b'{"ticketId": "65f0c0ffee0000000000abcd"}', f"application/json; charset={charset}"
    )

    assert response.status_code == 400, response.content
    assert response.json() == MALFORMED_JSON


@pytest.mark.parametrize("charset", ["rot13", "base64", "zlib", "hex", "idna", "punycode", "undefined", "bogus"])
@pytest.mark.parametrize("query", ["", "?x=1&y=%ff"])
def test_a_declared_charset_that_cannot_decode_text_is_ignored(signed_in, make_ticket, charset, query):
    ticket = make_ticket()
    content_type = f"application/json; charset={charset}"

    created = signed_in.generic("POST", f"/api/orders{query}", json.dumps({"ticketId": ticket.id}), content_type)
    listed = signed_in.generic("GET", f"/api/orders{query}", "", content_type, CONTENT_TYPE=content_type)

    assert created.status_code == 201, created.content
    assert listed.status_code == 200, listed.content
    assert [o["ticket"]["id"] for o in listed.json()] == [ticket.id]


@pytest.mark.parametrize("charset", ["base64", "rot13", "zlib", "punycode", "undefined", "idna"])
def test_the_wsgi_application_survives_a_non_text_charset_with_a_query_string(charset):
    """Through ticketing_orders.wsgi, the entry point gunicorn serves (Django's own WSGIRequest raised here)."""
    from ticketing_orders.wsgi import application

    responses = []
    for method, path in [("GET", "/api/orders"), ("POST", "/api/orders"), ("GET", "/nowhere")]:
        environ = {
            **RequestFactory()._base_environ(),
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "x=1&y=%ff%fe&z=punycode-",
            "CONTENT_TYPE": f"application/json; charset={charset}",
            "CONTENT_LENGTH": "2",
            "wsgi.input": io.BytesIO(b"{}"),
        }
        started = []
        body = b"".join(application(environ, lambda status, headers, *args, started=started: started.append(status)))
        responses.append((started[0], json.loads(body)))

    assert responses == [
        ("401 Unauthorized", {"errors": [{"message": "Not authorized"}]}),
        ("401 Unauthorized", {"errors": [{"message": "Not authorized"}]}),
        ("404 Not Found", NOT_FOUND),
    ]


@pytest.mark.parametrize(
    ("charset", "usable"),
    [
        ("utf-8", True),
        ("UTF8", True),
        ("utf-16", True),
        ("latin-1", True),
        ("cp1252", True),
        ("rot13", False),
        ("base64", False),
        ("zlib", False),
        ("bz2", False),
        ("uu", False),
        ("idna", False),
        ("punycode", False),
        ("undefined", False),
        ("no-such-charset", False),
        ("", False),
    ],
)
def test_is_usable_charset(charset, usable):
    assert is_usable_charset(charset) is usable


def test_json_in_a_declared_charset_is_read_in_that_charset(signed_in, make_ticket):
    ticket = make_ticket()

    response = signed_in.generic(
        "POST", "/api/orders", json.dumps({"ticketId": ticket.id}).encode("utf-16"), "application/json; charset=utf-16"
    )

    assert response.status_code == 201, response.content
    assert response.json()["ticket"]["id"] == ticket.id


def test_deep_but_parseable_json_is_a_validation_error_not_a_500(signed_in):
    body = b'{"ticketId": ' + b"[" * 500 + b"]" * 500 + b"}"

    response = signed_in.generic("POST", "/api/orders", body, "application/json")

    assert (response.status_code, response.json()) == (400, TICKET_ID_REQUIRED)


def test_unexpected_fault_is_500_something_went_wrong_without_a_stack_trace(signed_in, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database exploded: secret detail")

    monkeypatch.setattr("orders.apis.order_rows_for_user", broken)

    response = signed_in.get("/api/orders")

    assert response.status_code == 500
    assert response.json() == SOMETHING_WENT_WRONG
    assert b"secret detail" not in response.content and b"Traceback" not in response.content


def test_django_level_500_handler_answers_json():
    response = server_error(None)

    assert response.status_code == 500
    assert json.loads(response.content) == SOMETHING_WENT_WRONG


def test_disallowed_host_is_400_in_the_errors_shape():
    response = Client().get("/api/orders", headers={"host": "evil.example.com"})

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Bad Request"}]}


def test_exception_handler_flattens_nested_validation_errors():
    exc = exceptions.ValidationError({"ticket": {"id": ["bad id"]}, "non_field_errors": ["bad body"], "x": "y"})

    response = exception_handler(exc, {})

    assert response.status_code == 400
    assert response.data == {
        "errors": [
            {"message": "bad id", "field": "ticket.id"},
            {"message": "bad body"},
            {"message": "y", "field": "x"},
        ]
    }


@pytest.mark.parametrize(
    ("exc", "status", "body"),
    [
        (Http404("no such thing"), 404, NOT_FOUND),
        (exceptions.NotFound("custom"), 404, NOT_FOUND),
        (PermissionDenied(), 401, {"errors": [{"message": "Not authorized"}]}),
        (exceptions.PermissionDenied(), 401, {"errors": [{"message": "Not authorized"}]}),
        (exceptions.AuthenticationFailed(), 401, {"errors": [{"message": "Not authorized"}]}),
        (exceptions.ParseError("Malformed JSON body"), 400, MALFORMED_JSON),
        (ZeroDivisionError(), 500, SOMETHING_WENT_WRONG),
    ],
)
def test_exception_handler_maps_every_failure_to_the_errors_shape(exc, status, body):
    response = exception_handler(exc, {})

    assert (response.status_code, response.data) == (status, body)


# --- fuzz: a fixed seed, a few hundred requests, never a 5xx --------------------------------------

FUZZ_SEED = 20241125
HEX = "0123456789abcdefABCDEF"


def random_text(rng: random.Random, max_len: int = 30) -> str:
    alphabet = rng.choice(
        [
            string.printable,
            HEX,
            "".join(chr(c) for c in range(0x00, 0x100)),
            "\u2713\u00e9\U0001f600\ud800\udfff\ufeff\u202e\x00",
        ]
    )
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len)))


def random_json(rng: random.Random, depth: int = 0, ticket_ids: tuple[str, ...] = ()):
    kinds = ["str", "int", "float", "bool", "null", "hex", "ticket"] + (["list", "dict"] if depth < 6 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return random_text(rng)
    if kind == "int":
        return rng.choice([0, -1, 2**63, -(2**64), 10**30, 123456789012345678901234, rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice([0.5, -1e308, 1e308, 1e-320, rng.random()])
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "null":
        return None
    if kind == "hex":
        return "".join(rng.choice(HEX) for _ in range(rng.choice([23, 24, 24, 25])))
    if kind == "ticket":
        return rng.choice(ticket_ids) if ticket_ids else new_object_id()
    if kind == "list":
        return [random_json(rng, depth + 1, ticket_ids) for _ in range(rng.randint(0, 4))]
    keys = ["ticketId", "ticketID", "ticketid", "id", "", "__proto__", random_text(rng, 8)]
    return {rng.choice(keys): random_json(rng, depth + 1, ticket_ids) for _ in range(rng.randint(0, 4))}


def random_body(rng: random.Random, ticket_ids: tuple[str, ...]) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    if kind == 1:
        return rng.choice([b"[", b"{", b'{"a":']) * rng.choice([10, 5_000, 60_000])
    if kind == 2:
        return rng.choice([b"NaN", b'{"ticketId": NaN}', b"Infinity", b"", b" ", b"null", b"\xef\xbb\xbf{}"])
    if kind == 3:
        return json.dumps({"ticketId": random_json(rng, 0, ticket_ids)}).encode()
    if kind == 4:
        return json.dumps({"ticketID": random_json(rng, 0, ticket_ids)}, ensure_ascii=False).encode("utf-8", "replace")
    if kind == 5:
        body = json.dumps(random_json(rng, 0, ticket_ids)).encode()
        cut = rng.randint(0, len(body))
        return body[:cut] + bytes([rng.randrange(256)]) + body[cut:]
    return json.dumps(random_json(rng, 0, ticket_ids)).encode()


def random_path(rng: random.Random, order_ids: tuple[str, ...]) -> str:
    # A client sends bytes: lone surrogates cannot be on the wire. And the test client reads a
    # leading "//" as a host name.
    path = random_path_text(rng, order_ids).encode("utf-8", "replace").decode("utf-8")
    return "/" + path.lstrip("/")


def random_path_text(rng: random.Random, order_ids: tuple[str, ...]) -> str:
    kind = rng.randrange(9)
    if kind == 0:
        return rng.choice(["/api/orders", "/api/orders/"])
    if kind == 1:
        return f"/api/orders/{rng.choice(order_ids)}" + rng.choice(["", "/"])
    if kind == 2:
        return f"/api/orders/{rng.choice(order_ids).upper()}"
    if kind == 3:
        segment = "".join(f"%{rng.randrange(256):02x}" for _ in range(rng.randint(1, 30)))
        return f"/api/orders/{segment}"
    if kind == 4:
        return "/api/orders/" + random_text(rng).replace("/", "").replace("?", "").replace("#", "")
    if kind == 5:
        return "/" + "/".join(random_text(rng, 8).replace("?", "") for _ in range(rng.randint(0, 4)))
    if kind == 6:
        return f"/api/orders?{random_text(rng)}"
    if kind == 7:
        return rng.choice(["/api/orders/%00", "/api/orders/%0A", "/api/orders/..%2F..%2F", "/api/orders/%ZZ"])
    return "/api/orders/" + new_object_id() + rng.choice(["", "/", "%0a", "%20", "/x"])


def random_headers(rng: random.Random, good_cookie: str, other_cookie: str) -> dict:
    headers = {}
    cookie = rng.choice(
        [
            None,
            good_cookie,
            good_cookie,
            other_cookie,
            random_text(rng),
            f"session={random_text(rng)}",
            f"express:sess={random_text(rng)}",
            f"session={good_cookie.split('=', 1)[1][:-5]}",
        ]
    )
    if cookie is not None:
        # What a WSGI server hands over is always latin-1.
        headers["HTTP_COOKIE"] = cookie.encode("utf-8", "replace").decode("latin-1")
    if rng.random() < 0.4:
        authorization = rng.choice(["Bearer ", "Bearer", "Basic ", "", "bearer ", "Token "]) + random_text(
            rng, 200
        ).encode("utf-8", "replace").decode("latin-1")
        headers["HTTP_AUTHORIZATION"] = authorization
    if rng.random() < 0.2:
        headers["HTTP_X_FORWARDED_PROTO"] = rng.choice(["https", "http", "garbage"])
    if rng.random() < 0.2:
        headers["HTTP_ACCEPT"] = rng.choice(["text/html", "application/xml", "*/*", "garbage;;q=x", ""])
    return headers


CONTENT_TYPES = [
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "application/json; charset=latin-1",
    "application/json; charset=bogus",
    "application/json; charset=rot13",
    "application/json; charset=base64",
    "application/json; charset=punycode",
    "application/*",
    "*/*",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "multipart/form-data",
    "",
    "garbage/\x00;;;",
]


def is_errors_body(response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and list(body) == ["errors"]
        and bool(body["errors"])
        and all(isinstance(e, dict) and isinstance(e.get("message"), str) for e in body["errors"])
    )


def test_fuzzed_requests_never_answer_5xx(make_user, make_ticket):
    rng = random.Random(FUZZ_SEED)
    user_id, good_cookie = make_user()
    _, other_cookie = make_user()
    tickets = tuple(make_ticket(price=rng.choice([0, 20, 10.5, 1e9])).id for _ in range(5))
    orders = tuple(
        Order.objects.create(user_id=user_id, ticket_id=ticket_id, expires_at="2030-01-01T00:00:00Z").id
        for ticket_id in tickets[:2]
    )
    client = Client(raise_request_exception=False)
    failures = []

    for _ in range(400):
        method = rng.choice(["GET", "POST", "POST", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD", "FOO"])
        path = random_path(rng, orders)
        body = random_body(rng, tickets)
        content_type = rng.choice(CONTENT_TYPES)
        headers = random_headers(rng, good_cookie, other_cookie)
        response = client.generic(method, path, body, content_type, **headers)
        if response.status_code >= 500:
            failures.append((method, path, body[:100], content_type, headers, response.status_code, response.content))
        elif response.status_code >= 400 and method != "HEAD" and not is_errors_body(response):
            failures.append((method, path, body[:100], content_type, headers, "not the errors shape", response.content))

    assert failures == []


def test_fuzzed_order_bodies_only_ever_create_or_refuse(signed_in, make_ticket):
    """POST /api/orders with random JSON from a signed-in user: 201, 400, 404 or 415, and nothing else."""
    rng = random.Random(FUZZ_SEED + 1)
    tickets = tuple(make_ticket().id for _ in range(30))
    outcomes: dict[int, int] = {}
    failures = []

    for _ in range(300):
        body = random_body(rng, tickets)
        content_type = rng.choice(CONTENT_TYPES[:7])
        response = signed_in.generic("POST", rng.choice(["/api/orders", "/api/orders/"]), body, content_type)
        outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
        if response.status_code not in (201, 400, 404) or not (response.status_code == 201 or is_errors_body(response)):
            failures.append((body[:200], content_type, response.status_code, response.content))

    assert failures == []
    # The generator reaches every outcome, so the property above is not vacuous.
    assert set(outcomes) == {201, 400, 404}, outcomes
    assert Order.objects.filter(user_id=signed_in.user_id).count() == outcomes[201]
