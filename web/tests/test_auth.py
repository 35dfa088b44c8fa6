"""Who is signed in: the auth service's cookie, a Bearer header, and everything a client can get wrong."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import time

import jwt
import pytest
from django.conf import settings
from django.core.management import call_command
from rest_framework.test import APIClient

from core.ids import new_object_id
from orders.models import Order
from testsupport.http import API_ROUTES
from web.management.commands.mint_token import session_cookie_value

pytestmark = pytest.mark.django_db

NOT_AUTHORIZED = {"errors": [{"message": "Not authorized"}]}


def make_token(claims: dict | None = None, *, key: str | None = None, algorithm: str = "HS256") -> str:
    claims = {"id": "user-1", "email": "user-1@test.com", "iat": int(time.time())} if claims is None else claims
    return jwt.encode(claims, settings.JWT_KEY if key is None else key, algorithm=algorithm)


def b64(raw: bytes | str) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


def session_cookie(token: str, name: str = "session") -> str:
    return f"{name}={b64(json.dumps({'jwt': token}))}"


def b64url(raw: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


@pytest.fixture
def order_of(make_ticket):
    """An order belonging to the given user: seeing it in GET /api/orders proves who the caller is."""

    def make(user_id: str) -> Order:
        return Order.objects.create(user_id=user_id, ticket=make_ticket(), expires_at="2030-01-01T00:00:00Z")

    return make


def list_orders(**headers):
    return APIClient().get("/api/orders", **headers)


def assert_signed_in_as(response, order: Order) -> None:
    assert response.status_code == 200, response.content
    assert [(o["id"], o["userId"]) for o in response.json()] == [(order.id, order.user_id)]


def assert_not_authorized(response) -> None:
    assert response.status_code == 401, response.content
    assert response.json() == NOT_AUTHORIZED


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_without_credentials_every_route_is_401_not_authorized(method, path):
    response = getattr(APIClient(), method)(path, {"ticketId": new_object_id()}, format="json")

    assert_not_authorized(response)
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("cookie_name", ["session", "express:sess"])
def test_session_cookie_of_either_cookie_session_version_signs_in(order_of, cookie_name):
    order = order_of("user-1")

    response = list_orders(HTTP_COOKIE=session_cookie(make_token(), name=cookie_name))

    assert_signed_in_as(response, order)


def test_session_cookie_without_base64_padding_signs_in(order_of):
    order = order_of("user-1")
    value = b64(json.dumps({"jwt": make_token()}))
    assert value.endswith("=")

    response = list_orders(HTTP_COOKIE=f"session={value.rstrip('=')}")

    assert_signed_in_as(response, order)


def test_other_cookies_beside_the_session_cookie_do_not_matter(order_of):
    order = order_of("user-1")
    cookie = f"session.sig=abc; theme=dark; {session_cookie(make_token())}; express:sess.sig=xyz"

    assert_signed_in_as(list_orders(HTTP_COOKIE=cookie), order)


def test_bearer_header_signs_in(order_of):
    order = order_of("user-1")

    response = list_orders(HTTP_AUTHORIZATION=f"Bearer {make_token()}")

    assert_signed_in_as(response, order)


def test_another_authorization_scheme_leaves_the_cookie_in_charge(order_of):
    order = order_of("user-1")

    response = list_orders(HTTP_AUTHORIZATION=f"Basic {b64('user:pass')}", HTTP_COOKIE=session_cookie(make_token()))

    assert_signed_in_as(response, order)


def test_the_user_is_the_token_id_claim(order_of):
    mine, theirs = order_of("user-1"), order_of("user-2")

    response = list_orders(HTTP_COOKIE=session_cookie(make_token({"id": "user-2", "email": "e", "iat": 1})))

    assert_signed_in_as(response, theirs)
    assert mine.id not in response.content.decode()


def test_responses_never_set_a_cookie(order_of):
    order_of("user-1")

    response = list_orders(HTTP_COOKIE=session_cookie(make_token()))

    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert not response.cookies


@pytest.mark.parametrize("transport", ["cookie", "bearer"])
def test_token_signed_with_another_key_is_401(order_of, transport):
    order_of("user-1")
    token = make_token(key="not-the-jwt-key-0123456789abcdef0123456789")

    headers = (
        {"HTTP_COOKIE": session_cookie(token)} if transport == "cookie" else {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    )
    assert_not_authorized(list_orders(**headers))


def alg_none_tokens() -> list[str]:
    claims = {"id": "user-1", "email": "user-1@test.com", "iat": int(time.time())}
    signed = make_token(claims)
    return [
        jwt.encode(claims, None, algorithm="none"),
        f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}.",
        f"{b64url({'alg': 'None', 'typ': 'JWT'})}.{b64url(claims)}.",
        # A real token with its signature stripped.
        signed.rsplit(".", 1)[0] + ".",
        # A real signature on a header swapped to alg none.
        f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}.{signed.rsplit('.', 1)[1]}",
    ]


@pytest.mark.parametrize("token", alg_none_tokens())
@pytest.mark.parametrize("transport", ["cookie", "bearer"])
def test_unsigned_alg_none_token_is_401(order_of, token, transport):
    order_of("user-1")
    headers = (
        {"HTTP_COOKIE": session_cookie(token)} if transport == "cookie" else {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    )

    assert_not_authorized(list_orders(**headers))


def test_expired_token_is_401(order_of):
    order_of("user-1")
    token = make_token({"id": "user-1", "email": "e", "iat": int(time.time()) - 120, "exp": int(time.time()) - 60})

    assert_not_authorized(list_orders(HTTP_COOKIE=session_cookie(token)))
    assert_not_authorized(list_orders(HTTP_AUTHORIZATION=f"Bearer {token}"))


def test_token_with_a_future_exp_signs_in(order_of):
    order = order_of("user-1")
    token = make_token({"id": "user-1", "email": "e", "iat": int(time.time()), "exp": int(time.time()) + 3600})

    assert_signed_in_as(list_orders(HTTP_COOKIE=session_cookie(token)), order)


def test_a_few_seconds_of_clock_skew_are_tolerated_and_no_more(order_of):
    order = order_of("user-1")
    now = int(time.time())
    issued_just_ahead = make_token({"id": "user-1", "email": "e", "iat": now + 3})
    issued_far_ahead = make_token({"id": "user-1", "email": "e", "iat": now + 60})

    assert_signed_in_as(list_orders(HTTP_COOKIE=session_cookie(issued_just_ahead)), order)
    assert_not_authorized(list_orders(HTTP_COOKIE=session_cookie(issued_far_ahead)))


@pytest.mark.parametrize(
    "claims",
    [
        {"email": "user-1@test.com", "iat": 1},
        {"id": None, "iat": 1},
        {"id": "", "iat": 1},
        {"id": 123, "iat": 1},
        {"id": ["user-1"], "iat": 1},
        {"id": {"id": "user-1"}, "iat": 1},
        {"id": True, "iat": 1},
    ],
    ids=["no-id", "null", "empty", "number", "list", "object", "bool"],
)
def test_token_without_a_string_id_claim_is_401(claims):
    token = make_token(claims)

    assert_not_authorized(list_orders(HTTP_COOKIE=session_cookie(token)))
    assert_not_authorized(list_orders(HTTP_AUTHORIZATION=f"Bearer {token}"))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "!!!not-base64!!!",
        "e30",  # "{}" without its padding: no jwt
        "a",  # a length no padding can fix
        "%7B%22jwt%22%3A%22x%22%7D",
        "é",
        b64("not json at all"),
        b64(b"\xff\xfe\x00 not utf-8"),
        b64('{"jwt": '),
        b64("{}"),
        b64('{"foo": "bar"}'),
        b64('{"jwt": null}'),
        b64('{"jwt": 123}'),
        b64('{"jwt": ""}'),
        b64('{"jwt": ["a.b.c"]}'),
        b64('["jwt"]'),
        b64('"jwt"'),
        b64('{"jwt": "not.a.token"}'),
        b64('{"jwt": "garbage"}'),
        b64("[" * 100_000),
        b64('{"jwt": NaN}'),
    ],
)
@pytest.mark.parametrize("cookie_name", ["session", "express:sess"])
def test_malformed_session_cookie_is_401(order_of, value, cookie_name):
    order_of("user-1")

    assert_not_authorized(list_orders(HTTP_COOKIE=f"{cookie_name}={value}"))


def test_a_session_cookie_carrying_the_token_without_json_is_401(order_of):
    order_of("user-1")

    assert_not_authorized(list_orders(HTTP_COOKIE=f"session={b64(make_token())}"))
    assert_not_authorized(list_orders(HTTP_COOKIE=f"session={make_token()}"))


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer ....",
        "Bearer \x00\x01\x02",
        "Bearer \u00ff\u00fe",
        "Bearer \u2713",  # not latin-1: no server delivers it, the test client does
        "\u2713",
        "Token abc",
        f"Basic {b64('user:pass')}",
        "Bearer " + "A" * 10_000,
        "Bearer " + b64url({"alg": "HS256"}) + "." + "%%%" + ".sig",
    ],
)
def test_garbage_authorization_header_is_401_not_500(order_of, header):
    order_of("user-1")

    assert_not_authorized(list_orders(HTTP_AUTHORIZATION=header))


def test_a_bearer_token_for_the_wrong_scheme_name_is_not_read(order_of):
    order_of("user-1")

    assert_not_authorized(list_orders(HTTP_AUTHORIZATION=f"JWT {make_token()}"))


def test_session_cookie_value_helper_makes_the_auth_service_cookie(order_of):
    order = order_of("user-9")
    value = session_cookie_value(user_id="user-9", email="nine@test.com", issued_at=1_700_000_000)

    session = json.loads(base64.b64decode(value))
    assert list(session) == ["jwt"]
    assert jwt.get_unverified_header(session["jwt"]) == {"alg": "HS256", "typ": "JWT"}
    assert jwt.decode(session["jwt"], settings.JWT_KEY, algorithms=["HS256"]) == {
        "id": "user-9",
        "email": "nine@test.com",
        "iat": 1_700_000_000,
    }
    assert_signed_in_as(list_orders(HTTP_COOKIE=f"session={value}"), order)


def test_mint_token_command_prints_a_cookie_that_signs_in_as_the_given_user(order_of):
    order = order_of("65f0c0ffee0000000000abcd")
    out = io.StringIO()

    call_command("mint_token", "--id", "65f0c0ffee0000000000abcd", "--email", "x@test.com", stdout=out)

    printed = out.getvalue().strip()
    assert printed.startswith("session=")
    claims = jwt.decode(
        json.loads(base64.b64decode(printed.removeprefix("session=")))["jwt"], settings.JWT_KEY, algorithms=["HS256"]
    )
    assert {k: claims[k] for k in ("id", "email")} == {"id": "65f0c0ffee0000000000abcd", "email": "x@test.com"}
    assert "exp" not in claims
    assert_signed_in_as(list_orders(HTTP_COOKIE=printed), order)


def test_mint_token_command_without_an_id_makes_a_new_object_id():
    out = io.StringIO()

    call_command("mint_token", stdout=out)

    session = json.loads(base64.b64decode(out.getvalue().strip().removeprefix("session=")))
    claims = jwt.decode(session["jwt"], settings.JWT_KEY, algorithms=["HS256"])
    assert len(claims["id"]) == 24 and int(claims["id"], 16) >= 0
    assert claims["email"] == "test@test.com"
    assert list_orders(HTTP_COOKIE=out.getvalue().strip()).status_code == 200


# --- a Bearer header that is there but wrong never falls back to the cookie ------------------------


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", "Bearer  a  b  c", "bearer", "BEARER x y"])
def test_a_malformed_bearer_header_does_not_fall_back_to_a_valid_cookie(order_of, header):
    order_of("user-1")

    assert_not_authorized(list_orders(HTTP_AUTHORIZATION=header, HTTP_COOKIE=session_cookie(make_token())))


def test_an_invalid_bearer_token_does_not_fall_back_to_a_valid_cookie(order_of):
    order_of("user-1")

    response = list_orders(HTTP_AUTHORIZATION="Bearer not.a.token", HTTP_COOKIE=session_cookie(make_token()))

    assert_not_authorized(response)


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_the_bearer_scheme_name_is_case_insensitive(order_of, scheme):
    order = order_of("user-1")

    assert_signed_in_as(list_orders(HTTP_AUTHORIZATION=f"{scheme} {make_token()}"), order)


# --- a correctly signed token whose id the service cannot store ------------------------------------

ROUTES = [
    ("get", "/api/orders"),
    ("post", "/api/orders"),
    ("get", "/api/orders/65f0c0ffee0000000000abcd"),
    ("delete", "/api/orders/65f0c0ffee0000000000abcd"),
]


@pytest.mark.parametrize(
    "user_id",
    ["a" * 256, "é" * 256, "x" * 100_000, "user\x00-1", "\x00", "user-\ud800", "\udfff"],
    ids=["256", "256-non-ascii", "100k", "nul-inside", "nul", "lone-high-surrogate", "lone-low-surrogate"],
)
@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("transport", ["cookie", "bearer"])
def test_a_signed_token_whose_id_cannot_be_stored_is_401_on_every_route(make_ticket, user_id, method, path, transport):
    token = make_token({"id": user_id, "email": "e@test.com", "iat": int(time.time())})
    headers = (
        {"HTTP_COOKIE": session_cookie(token)} if transport == "cookie" else {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    )

    response = getattr(APIClient(), method)(path, {"ticketId": make_ticket().id}, format="json", **headers)

    assert_not_authorized(response)
    assert not Order.objects.exists()


def test_an_id_of_exactly_the_column_length_signs_in_and_orders(make_ticket):
    user_id = "é" * Order._meta.get_field("user_id").max_length
    ticket = make_ticket()
    token = make_token({"id": user_id, "email": "e@test.com", "iat": int(time.time())})

    created = APIClient().post(
        "/api/orders", {"ticketId": ticket.id}, format="json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )

    assert created.status_code == 201, created.content
    assert Order.objects.get().user_id == user_id


def test_the_id_length_limit_is_the_order_user_id_column():
    from web.authentication import USER_ID_MAX_LENGTH

    assert Order._meta.get_field("user_id").max_length == USER_ID_MAX_LENGTH


# --- why a request is not signed in: logged at INFO, never the token -------------------------------


def expired_token() -> str:
    return make_token({"id": "user-1", "email": "e", "iat": int(time.time()) - 120, "exp": int(time.time()) - 60})


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no credentials"),
        ({"HTTP_COOKIE": "session=!!!"}, "malformed session cookie"),
        ({"HTTP_AUTHORIZATION": "Bearer a b"}, "malformed Authorization header"),
        ({"HTTP_AUTHORIZATION": "Bearer garbage.token.here"}, "malformed token"),
        ({"HTTP_AUTHORIZATION": f"Bearer {make_token(key='another-key-0123456789abcdef0123456789')}"}, "bad signature"),
        ({"HTTP_COOKIE": session_cookie(make_token(key="another-key-0123456789abcdef0123456789"))}, "bad signature"),
        ({"HTTP_AUTHORIZATION": f"Bearer {expired_token()}"}, "expired"),
        ({"HTTP_AUTHORIZATION": f"Bearer {alg_none_tokens()[0]}"}, "algorithm not allowed"),
        ({"HTTP_AUTHORIZATION": f"Bearer {make_token({'id': 'x' * 256, 'iat': 1})}"}, "user id missing or unusable"),
        ({"HTTP_AUTHORIZATION": f"Bearer {make_token({'email': 'e', 'iat': 1})}"}, "user id missing or unusable"),
    ],
    ids=[
        "none",
        "bad-cookie",
        "two-words",
        "garbage",
        "signature-bearer",
        "signature-cookie",
        "expired",
        "alg-none",
        "long-id",
        "no-id",
    ],
)
def test_the_reason_for_a_401_is_logged_without_the_token(caplog, headers, reason):
    caplog.set_level("INFO", logger="web.authentication")

    assert_not_authorized(list_orders(**headers))

    records = [r for r in caplog.records if r.name == "web.authentication"]
    assert [(r.levelname, r.getMessage().split(" (")[0]) for r in records] == [("INFO", f"Not signed in: {reason}")]
    logged = caplog.text
    for value in headers.values():
        for secret in (value.removeprefix("Bearer "), value.removeprefix("session=")):
            assert secret not in logged
    for part in "".join(headers.values()).replace("Bearer ", ".").split("."):
        if len(part) > 16:
            assert part not in logged


def test_nothing_is_logged_when_signed_in(caplog, order_of):
    caplog.set_level("DEBUG", logger="web.authentication")
    order_of("user-1")

    assert list_orders(HTTP_AUTHORIZATION=f"Bearer {make_token()}").status_code == 200
    assert [r for r in caplog.records if r.name == "web.authentication"] == []


def test_mint_token_bearer_prints_a_bare_token_that_signs_in(order_of):
    order = order_of("65f0c0ffee0000000000abcd")
    out = io.StringIO()

    call_command("mint_token", "--bearer", "--id", "65f0c0ffee0000000000abcd", stdout=out)

    token = out.getvalue().strip()
    assert jwt.decode(token, settings.JWT_KEY, algorithms=["HS256"])["id"] == "65f0c0ffee0000000000abcd"
    assert_signed_in_as(list_orders(HTTP_AUTHORIZATION=f"Bearer {token}"), order)


def test_a_token_accepted_before_is_refused_once_the_key_has_changed(order_of, monkeypatch):
    """Verified tokens are remembered per process (web.authentication.verified_claims), never past a change
    of what verifies them: after a key rotation the old key's token is refused, the new key's accepted."""
    from rest_framework_simplejwt.backends import TokenBackend

    from web.authentication import SessionToken

    order = order_of("user-1")
    old = make_token()
    assert_signed_in_as(list_orders(HTTP_COOKIE=session_cookie(old)), order)

    rotated = TokenBackend("HS256", "rotated-key-0123456789abcdef0123456789", leeway=5)
    monkeypatch.setattr(SessionToken, "_token_backend", rotated)
    assert list_orders(HTTP_COOKIE=session_cookie(old)).json() == NOT_AUTHORIZED
    new = make_token(key="rotated-key-0123456789abcdef0123456789")
    assert_signed_in_as(list_orders(HTTP_COOKIE=session_cookie(new)), order)


def test_an_expired_token_is_refused_even_when_it_was_accepted_before(order_of, monkeypatch):
    order = order_of("user-1")
    token = make_token(
        {"id": "user-1", "email": "user-1@test.com", "iat": int(time.time()), "exp": int(time.time()) + 60}
    )
    assert_signed_in_as(list_orders(HTTP_COOKIE=session_cookie(token)), order)

    later = time.time() + 120  # past exp and the 5 s leeway
    monkeypatch.setattr(
        "rest_framework_simplejwt.tokens.aware_utcnow", lambda: dt.datetime.fromtimestamp(later, dt.UTC)
    )
    monkeypatch.setattr("web.authentication.aware_utcnow", lambda: dt.datetime.fromtimestamp(later, dt.UTC))
    assert list_orders(HTTP_COOKIE=session_cookie(token)).json() == NOT_AUTHORIZED
