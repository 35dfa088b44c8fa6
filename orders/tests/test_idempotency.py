"""`Idempotency-Key` on POST /api/orders: replays, refusals, scoping, expiry and the purge."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from django.db import DatabaseError, connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from core.ids import new_object_id
from core.transactions import atomic
from messaging.models import OutboxEvent
from messaging.worker import registered_periodic
from orders import idempotency, services
from orders.exceptions import IdempotencyKeyInProgress
from orders.models import IdempotencyKey, Order, OrderStatus
from testsupport.waiting import wait_until
from tickets_replica.models import Ticket

pytestmark = pytest.mark.django_db

KEY_MALFORMED = {
    "errors": [{"message": "Idempotency-Key must be 1 to 255 printable ASCII characters", "field": "Idempotency-Key"}]
}
KEY_REUSED = {
    "errors": [{"message": "Idempotency-Key was already used with another request body", "field": "Idempotency-Key"}]
}
KEY_IN_PROGRESS = {"errors": [{"message": "A request with this Idempotency-Key is still in progress"}]}
ALREADY_RESERVED = {"errors": [{"message": "Ticket is already reserved"}]}
NOT_FOUND = {"errors": [{"message": "Not Found"}]}
TICKET_ID_REQUIRED = {"errors": [{"message": "TicketId must be provided", "field": "ticketId"}]}


@pytest.fixture(params=["sql", "orm"])
def path(request, monkeypatch) -> str:
    """Each test on the hand-written statements and on the ORM path MongoDB takes."""
    if request.param == "orm":
        monkeypatch.setattr(idempotency, "SQL_VENDORS", frozenset())
        monkeypatch.setattr(services, "SQL_VENDORS", frozenset())
    return request.param


def post(client: APIClient, body, key: str | None = "key-1"):
    extra = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.generic("POST", "/api/orders", raw, "application/json", **extra)


def order_created_rows() -> list[dict]:
    return [row.payload for row in OutboxEvent.objects.filter(subject="order:created").order_by("created_at", "id")]


def test_a_repeat_answers_the_first_201_byte_for_byte_and_creates_nothing(signed_in, make_ticket, path):
    ticket = make_ticket()

    first = post(signed_in, {"ticketId": ticket.id})
    again = post(signed_in, {"ticketId": ticket.id})
    third = post(signed_in, {"ticketId": ticket.id})

    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first
    order = Order.objects.get()
    assert first.json()["id"] == order.id
    for repeat in (again, third):
        assert (repeat.status_code, repeat.content) == (201, first.content)
        assert repeat["Idempotent-Replayed"] == "true"
        assert repeat["Content-Type"] == first["Content-Type"] == "application/json"
    assert [row["id"] for row in order_created_rows()] == [order.id]
    assert OutboxEvent.objects.count() == 1
    record = IdempotencyKey.objects.get()
    assert (record.user_id, record.key, record.order_id) == (signed_in.user_id, "key-1", order.id)


def test_without_the_header_every_post_is_a_new_request(signed_in, make_ticket):
    ticket = make_ticket()

    first = post(signed_in, {"ticketId": ticket.id}, key=None)
    again = post(signed_in, {"ticketId": ticket.id}, key=None)

    assert (first.status_code, again.status_code) == (201, 400)
    assert again.json() == ALREADY_RESERVED
    assert "Idempotent-Replayed" not in first
    assert not IdempotencyKey.objects.exists()


def test_the_replay_is_the_first_answer_even_after_the_order_changed(signed_in, make_ticket, path):
    ticket = make_ticket()
    first = post(signed_in, {"ticketId": ticket.id})
    assert signed_in.delete(f"/api/orders/{first.json()['id']}").status_code == 204

    again = post(signed_in, {"ticketId": ticket.id})

    assert (again.status_code, again.content, again["Idempotent-Replayed"]) == (201, first.content, "true")
    assert json.loads(again.content)["status"] == "created"
    assert Order.objects.get().status == OrderStatus.CANCELLED
    assert len(order_created_rows()) == 1


@pytest.mark.parametrize(
    "body",
    [
        '{{"ticketID": "{id}"}}',  # the alias
        '{{"ticketId": "{ID}"}}',  # upper-case hex: the same ticket
        '{{ "note": "x",\n  "ticketId" : "{id}" }}',  # spacing, order, a field the service ignores
    ],
    ids=["alias", "upper-case", "spacing-and-extra-field"],
)
def test_a_body_that_asks_for_the_same_ticket_is_the_same_request(signed_in, make_ticket, body):
    ticket = make_ticket()
    first = post(signed_in, {"ticketId": ticket.id})

    again = post(signed_in, body.format(id=ticket.id, ID=ticket.id.upper()))

    assert (again.status_code, again.content, again["Idempotent-Replayed"]) == (201, first.content, "true")
    assert Order.objects.count() == 1


def test_the_key_with_another_body_is_422_and_changes_nothing(signed_in, make_ticket, path):
    first_ticket, other_ticket = make_ticket(), make_ticket()
    first = post(signed_in, {"ticketId": first_ticket.id})

    other = post(signed_in, {"ticketId": other_ticket.id})

    assert (other.status_code, other.json()) == (422, KEY_REUSED)
    assert "Idempotent-Replayed" not in other
    assert list(Order.objects.values_list("ticket_id", flat=True)) == [first_ticket.id]
    assert len(order_created_rows()) == 1
    # The key still answers its own request.
    assert post(signed_in, {"ticketId": first_ticket.id}).content == first.content


def test_keys_are_the_users_own(signed_in, other_user, make_ticket, path):
    ticket, other_ticket = make_ticket(), make_ticket()
    mine = post(signed_in, {"ticketId": ticket.id})

    # Someone else's same key and body is their own request: never a replay of my order.
    theirs_same_body = post(other_user, {"ticketId": ticket.id})
    theirs_other_body = post(other_user, {"ticketId": other_ticket.id})

    assert mine.status_code == 201
    assert (theirs_same_body.status_code, theirs_same_body.json()) == (400, ALREADY_RESERVED)
    assert "Idempotent-Replayed" not in theirs_same_body
    assert theirs_other_body.status_code == 201
    assert theirs_other_body.json()["userId"] == other_user.user_id
    assert sorted(IdempotencyKey.objects.values_list("user_id", flat=True)) == sorted(
        [signed_in.user_id, other_user.user_id]
    )


@pytest.mark.parametrize(
    "key",
    ["", "k" * 256, "caf\xe9", "tab\there", "new\nline", "del\x7f", "\x00"],
    ids=["empty", "256-chars", "latin-1", "tab", "newline", "DEL", "NUL"],
)
def test_a_malformed_key_is_400_with_the_field_and_creates_nothing(signed_in, make_ticket, key):
    response = post(signed_in, {"ticketId": make_ticket().id}, key=key)

    assert (response.status_code, response.json()) == (400, KEY_MALFORMED)
    assert not Order.objects.exists()
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize(
    "key", ["k" * 255, "a", " spaced key ~!@#$%^&*()", '"quoted"'], ids=["255", "1", "punct", "quoted"]
)
def test_any_one_to_255_printable_ascii_characters_make_a_key(signed_in, make_ticket, key):
    ticket = make_ticket()

    first = post(signed_in, {"ticketId": ticket.id}, key=key)
    again = post(signed_in, {"ticketId": ticket.id}, key=key)

    assert first.status_code == 201
    assert (again.status_code, again.content) == (201, first.content)
    assert IdempotencyKey.objects.get().key == key


def test_a_malformed_key_is_refused_before_the_body_is_read(signed_in):
    response = post(signed_in, "{}", key="")

    assert (response.status_code, response.json()) == (400, KEY_MALFORMED)


def test_not_signed_in_is_401_whatever_the_key(api_client, make_ticket):
    response = post(api_client, {"ticketId": make_ticket().id}, key="")

    assert response.status_code == 401


# --- Which refusals are remembered: none. Only a created order pins its key. ----------------------


def test_a_404_for_a_ticket_the_replica_has_not_seen_yet_does_not_pin_the_key(signed_in, path):
    ticket_id = new_object_id()
    assert (post(signed_in, {"ticketId": ticket_id}).json(), Order.objects.count()) == (NOT_FOUND, 0)

    Ticket.objects.create(id=ticket_id, title="late", price=5, version=0)  # ticket:created arrives
    response = post(signed_in, {"ticketId": ticket_id})

    assert response.status_code == 201, response.content
    assert "Idempotent-Replayed" not in response
    assert not IdempotencyKey.objects.exclude(order_id=response.json()["id"]).exists()


def test_a_validation_failure_does_not_pin_the_key(signed_in, make_ticket, path):
    assert post(signed_in, {"ticketId": "nope"}).json() == TICKET_ID_REQUIRED
    assert not IdempotencyKey.objects.exists()

    response = post(signed_in, {"ticketId": make_ticket().id})

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response


def test_ticket_already_reserved_does_not_pin_the_key(signed_in, other_user, make_ticket, path):
    ticket = make_ticket()
    holder = post(other_user, {"ticketId": ticket.id}, key=None)
    refused = post(signed_in, {"ticketId": ticket.id})
    assert (refused.status_code, refused.json()) == (400, ALREADY_RESERVED)
    assert not IdempotencyKey.objects.exists()

    assert other_user.delete(f"/api/orders/{holder.json()['id']}").status_code == 204
    retried = post(signed_in, {"ticketId": ticket.id})

    assert retried.status_code == 201
    assert retried.json()["userId"] == signed_in.user_id
    assert "Idempotent-Replayed" not in retried


# --- Expiry and the purge ----------------------------------------------------------------------------


def age_keys(seconds: float) -> None:
    IdempotencyKey.objects.update(created_at=timezone.now() - dt.timedelta(seconds=seconds))


def test_an_expired_key_is_ignored_before_the_purge_comes(signed_in, make_ticket, settings, path):
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 3600
    first_ticket, second_ticket = make_ticket(), make_ticket()
    first = post(signed_in, {"ticketId": first_ticket.id})
    age_keys(3601)

    # Another body is no longer a 422, and the key now answers the new request.
    second = post(signed_in, {"ticketId": second_ticket.id})
    again = post(signed_in, {"ticketId": second_ticket.id})

    assert (first.status_code, second.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in second
    assert (again.content, again["Idempotent-Replayed"]) == (second.content, "true")
    assert Order.objects.count() == 2
    assert IdempotencyKey.objects.get().order_id == second.json()["id"]


def test_a_key_within_its_ttl_is_kept(signed_in, make_ticket, settings, path):
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 3600
    ticket = make_ticket()
    first = post(signed_in, {"ticketId": ticket.id})
    age_keys(3500)

    assert post(signed_in, {"ticketId": make_ticket().id}).status_code == 422
    assert post(signed_in, {"ticketId": ticket.id}).content == first.content


def make_key(*, age_seconds: float, user_id: str | None = None) -> IdempotencyKey:
    return IdempotencyKey.objects.create(
        user_id=user_id or new_object_id(),
        key=new_object_id(),
        fingerprint="0" * 64,
        order_id=new_object_id(),
        response="{}",
        created_at=timezone.now() - dt.timedelta(seconds=age_seconds),
    )


def test_the_purge_deletes_the_expired_keys_in_batches_and_keeps_the_others(settings):
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 600
    expired = [make_key(age_seconds=601 + n) for n in range(7)]
    kept = [make_key(age_seconds=age) for age in (0, 300, 590)]

    assert idempotency.idempotency_keys_purge(batch=3) == len(expired)

    assert sorted(IdempotencyKey.objects.values_list("id", flat=True)) == sorted(k.id for k in kept)
    assert idempotency.idempotency_keys_purge(batch=3) == 0


def test_the_purge_is_one_of_the_workers_periodic_tasks(settings):
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 600
    make_key(age_seconds=601)
    kept = make_key(age_seconds=1)
    [task] = [task for task in registered_periodic() if task.name == "idempotency key purge"]

    task.run()

    assert list(IdempotencyKey.objects.values_list("id", flat=True)) == [kept.id]
    assert task.every() < settings.WORKER_STALL_SECONDS


@pytest.mark.nats
def test_run_listeners_purges_expired_keys(worker_process):
    expired, kept = make_key(age_seconds=7200), make_key(age_seconds=1)
    worker_process(IDEMPOTENCY_KEY_TTL_SECONDS="3600")

    wait_until(
        lambda: not IdempotencyKey.objects.filter(id=expired.id).exists(),
        timeout=30,
        message="the worker to purge the expired key",
    )
    assert list(IdempotencyKey.objects.values_list("id", flat=True)) == [kept.id]


# --- A key held by a request still running ----------------------------------------------------------


def test_a_second_record_of_one_key_is_refused_by_the_unique_constraint(path):
    """The database is the judge, whatever path or check ran before (MongoDB: the write conflict)."""
    values = {"user_id": "u1", "key": "k", "fingerprint": "f" * 64, "response": b"{}"}
    with atomic():
        idempotency.idempotency_key_record(order_id=new_object_id(), **values)

    with pytest.raises(IdempotencyKeyInProgress), atomic():
        idempotency.idempotency_key_record(order_id=new_object_id(), **values)

    assert IdempotencyKey.objects.count() == 1


def test_a_key_held_by_a_running_transaction_is_409_on_postgresql_and_waited_for_on_sqlite(
    transactional_db, signed_in, make_ticket
):
    """PostgreSQL answers 409 at once; SQLite's IMMEDIATE transactions queue the second request behind
    the first, which then finds the first's answer: both keep the contract (no order twice, no 500)."""
    ticket = make_ticket()
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    stored_answer = json.dumps({"held": True}).encode()

    def first_request() -> None:
        try:
            with atomic():
                assert idempotency.idempotency_key_claim(user_id=signed_in.user_id, key="key-1") is None
                idempotency.idempotency_key_record(
                    user_id=signed_in.user_id,
                    key="key-1",
                    fingerprint=idempotency.request_fingerprint(ticket_id=ticket.id),
                    order_id=new_object_id(),
                    response=stored_answer,
                )
                holding.set()
                # On SQLite the second request cannot run until this commits: wait a bounded while.
                release.wait(timeout=10 if connection.vendor == "postgresql" else 1)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_request)
    thread.start()
    assert holding.wait(timeout=10), errors

    during = post(signed_in, {"ticketId": ticket.id})
    release.set()
    thread.join(timeout=15)
    after = post(signed_in, {"ticketId": ticket.id})

    assert errors == []
    if connection.vendor == "postgresql":
        assert (during.status_code, during.json(), during["Retry-After"]) == (409, KEY_IN_PROGRESS, "1")
    else:
        assert (during.status_code, during.content, during["Idempotent-Replayed"]) == (201, stored_answer, "true")
    assert (after.status_code, after.content, after["Idempotent-Replayed"]) == (201, stored_answer, "true")
    assert not Order.objects.exists()


# --- What each kind of request costs in statements ------------------------------------------------


def statements_of(client: APIClient, body, key: str | None) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = post(client, body, key=key)
    assert response.status_code == 201, response.content
    # The test's own transaction turns the service's into a savepoint: not a statement of the service's.
    return [query["sql"] for query in queries.captured_queries if "SAVEPOINT" not in query["sql"]]


def test_without_the_header_a_create_runs_the_statements_it_always_did(signed_in, make_ticket):
    statements = statements_of(signed_in, {"ticketId": make_ticket().id}, key=None)

    # SELECT the ticket, INSERT the order unless reserved, INSERT its outbox row (BEGIN/COMMIT aside).
    assert len(statements) == 3, statements
    assert not [sql for sql in statements if "idempotency" in sql.lower()]


def test_a_new_key_adds_two_reads_and_an_insert_and_a_repeat_is_one_read(signed_in, make_ticket):
    ticket = make_ticket()

    first = statements_of(signed_in, {"ticketId": ticket.id}, key="k")
    repeat = statements_of(signed_in, {"ticketId": ticket.id}, key="k")

    on_key = [sql for sql in first if "orders_idempotencykey" in sql]
    assert [sql.split()[0] for sql in on_key] == ["SELECT", "SELECT", "INSERT"], first
    locks = [sql for sql in first if "pg_try_advisory_xact_lock" in sql]
    assert len(locks) == (1 if connection.vendor == "postgresql" else 0)
    assert len(first) == 3 + len(on_key) + len(locks), first
    assert len(repeat) == 1 and repeat[0].startswith("SELECT") and "orders_idempotencykey" in repeat[0], repeat


@pytest.mark.parametrize(
    ("labels", "raised"), [(["TransientTransactionError"], IdempotencyKeyInProgress), ([], DatabaseError)]
)
def test_on_mongodb_a_write_conflict_on_the_key_is_in_progress_and_other_errors_stay_errors(
    monkeypatch, labels, raised
):
    """No MongoDB server runs here: the error is the one django-mongodb-backend raises for a write
    conflict (a DatabaseError from PyMongo's OperationFailure), made by hand."""
    operation_failure = pytest.importorskip("pymongo.errors").OperationFailure
    monkeypatch.setattr(idempotency, "SQL_VENDORS", frozenset())

    def conflicting_insert(**values):
        failure = operation_failure("WriteConflict error", code=112, details={"code": 112, "errorLabels": labels})
        raise DatabaseError() from failure

    monkeypatch.setattr(IdempotencyKey.objects, "create", conflicting_insert)

    with pytest.raises(raised):
        idempotency.idempotency_key_record(
            user_id="u1", key="k", fingerprint="f" * 64, order_id=new_object_id(), response=b"{}"
        )
