"""Batches of ticket events: the same result as one by one, on the SQL and the ORM (MongoDB) path."""

from __future__ import annotations

import contextlib
import random

import pytest
from django.db import IntegrityError, connection

from core.ids import new_object_id
from tickets_replica.models import Ticket
from tickets_replica.services import (
    ReplicaOutcome,
    TicketChange,
    ticket_apply_update,
    ticket_create,
    tickets_apply,
)

pytestmark = pytest.mark.django_db

APPLIED, IGNORED = ReplicaOutcome.APPLIED, ReplicaOutcome.IGNORED


def created(ticket_id: str, version: int, title: str | None = None) -> TicketChange:
    return TicketChange(id=ticket_id, title=title or f"v{version}", price=version, version=version, created=True)


def updated(ticket_id: str, version: int, title: str | None = None) -> TicketChange:
    return TicketChange(id=ticket_id, title=title or f"v{version}", price=version, version=version)


def replica(ticket_id: str) -> tuple | None:
    return Ticket.objects.filter(id=ticket_id).values_list("title", "price", "version").first()


def one_by_one(changes: list[TicketChange]) -> list[ReplicaOutcome]:
    apply = {True: ticket_create, False: ticket_apply_update}
    return [
        apply[c.created](id=c.id, title=c.title, price=c.price, version=c.version)  # type: ignore[operator]
        for c in changes
    ]


def run_scenario(existing: dict[str, int], events: list[tuple[str, str, int, str]], *, batch: bool, sql: bool):
    """Apply `events` ((kind, ticket key, version, title)) to fresh tickets; the replica and outcomes by key."""
    ids = {key: new_object_id() for key in {e[1] for e in events} | existing.keys()}
    for key, version in existing.items():
        Ticket.objects.create(id=ids[key], title=f"existing v{version}", price=version, version=version)
    changes = [
        (created if kind == "created" else updated)(ids[key], version, title) for kind, key, version, title in events
    ]
    if batch:
        result = tickets_apply(changes=changes, sql=sql)
        outcomes = result.outcomes
        summary = {
            name: {key for key, i in ids.items() if i in getattr(result, name)}
            for name in ("created", "updated", "unchanged")
        }
    else:
        outcomes, summary = one_by_one(changes), None
    return {key: replica(ticket_id) for key, ticket_id in ids.items()}, outcomes, summary


SCENARIOS = {
    "created": ({}, [("created", "a", 0, "c0")]),
    "created twice": ({}, [("created", "a", 0, "first"), ("created", "a", 0, "second")]),
    "created when there": ({"a": 0}, [("created", "a", 0, "again")]),
    "newer update": ({"a": 1}, [("updated", "a", 2, "u2")]),
    "equal update": ({"a": 2}, [("updated", "a", 2, "u2")]),
    "older update": ({"a": 3}, [("updated", "a", 2, "u2")]),
    "update before its create": ({}, [("updated", "a", 1, "u1"), ("created", "a", 0, "c0")]),
    "create then updates": ({}, [("created", "a", 0, "c0"), ("updated", "a", 2, "u2"), ("updated", "a", 1, "u1")]),
    "versions out of order": ({"a": 0}, [("updated", "a", v, f"u{v}") for v in (3, 1, 4, 2, 4)]),
    "equal versions, first wins": ({}, [("updated", "a", 1, "first"), ("updated", "a", 1, "second")]),
    "create above a later update": ({}, [("created", "a", 5, "c5"), ("updated", "a", 3, "u3")]),
    "update below a later create": ({}, [("updated", "a", 3, "u3"), ("created", "a", 5, "c5")]),
    "created when there, then another": ({"a": 0}, [("created", "a", 0, "again"), ("created", "b", 0, "b0")]),
    "several tickets": (
        {"b": 4},
        [("updated", "b", 5, "b5"), ("created", "a", 0, "a0"), ("updated", "c", 2, "c2"), ("updated", "b", 3, "b3")],
    ),
}


@pytest.mark.parametrize("sql", [True, False], ids=["sql", "orm"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_batch_gives_what_one_by_one_gives(name, sql):
    existing, events = SCENARIOS[name]

    batch_replica, batch_outcomes, _ = run_scenario(existing, events, batch=True, sql=sql)
    single_replica, single_outcomes, _ = run_scenario(existing, events, batch=False, sql=sql)

    assert batch_replica == single_replica
    assert batch_outcomes == single_outcomes


def test_the_newest_version_wins_whatever_the_order():
    replica_by_key, outcomes, summary = run_scenario(
        {"a": 0},
        [("updated", "a", 2, "u2"), ("updated", "a", 4, "u4"), ("updated", "a", 3, "u3"), ("updated", "a", 4, "again")],
        batch=True,
        sql=True,
    )

    assert replica_by_key == {"a": ("u4", 4, 4)}
    assert outcomes == [APPLIED, APPLIED, IGNORED, IGNORED]
    assert summary == {"created": set(), "updated": {"a"}, "unchanged": set()}


def test_the_summary_says_what_was_created_updated_or_left_alone():
    _, _, summary = run_scenario(
        {"old": 3, "same": 2},
        [("created", "new", 0, "n0"), ("updated", "old", 4, "o4"), ("updated", "same", 2, "s2")],
        batch=True,
        sql=True,
    )

    assert summary == {"created": {"new"}, "updated": {"old"}, "unchanged": {"same"}}


@pytest.mark.parametrize("seed", range(20))
def test_random_batches_match_one_by_one_on_both_paths(seed):
    rng = random.Random(seed)
    keys = ["a", "b", "c", "d"]
    existing = {k: rng.randrange(4) for k in keys if rng.random() < 0.5}
    events = [
        (rng.choice(["created", "updated", "updated"]), rng.choice(keys), rng.randrange(6), f"t{i}") for i in range(12)
    ]

    single = run_scenario(existing, events, batch=False, sql=True)[:2]
    assert run_scenario(existing, events, batch=True, sql=True)[:2] == single
    assert run_scenario(existing, events, batch=True, sql=False)[:2] == single


def test_a_batch_larger_than_one_statement_applies_every_row():
    ids = [new_object_id() for _ in range(1200)]
    Ticket.objects.bulk_create(Ticket(id=i, title="v0", price=0, version=0) for i in ids[:600])

    result = tickets_apply(changes=[updated(i, 1) for i in ids])

    assert result.outcomes == [APPLIED] * 1200
    assert (len(result.created), len(result.updated), len(result.unchanged)) == (600, 600, 0)
    assert set(Ticket.objects.values_list("version", flat=True)) == {1}
    assert Ticket.objects.count() == 1200


@pytest.mark.parametrize("sql", [True, False], ids=["sql", "orm"])
def test_a_failing_batch_leaves_nothing_behind(sql):
    """The creations' statement succeeds, the updates' fails (a negative version breaks the CHECK)."""
    good, bad = new_object_id(), new_object_id()

    with pytest.raises(IntegrityError):
        tickets_apply(changes=[created(good, 0), updated(bad, -1)], sql=sql)

    assert not Ticket.objects.filter(id__in=[good, bad]).exists()


@contextlib.contextmanager
def another_writer_inserts(ticket_id: str, *, version: int):
    """Another writer's row for `ticket_id` lands just after the first lookup that finds the ticket missing.

    That lookup is the ORM path's `exists()` (the batch's first read of the versions has no LIMIT);
    the row is written by the same connection, before the service's INSERT and its savepoint.
    """
    fired = False

    def insert_after_the_lookup(execute, sql, params, many, context):
        nonlocal fired
        result = execute(sql, params, many, context)
        if not fired and sql.startswith("SELECT") and sql.endswith("LIMIT 1") and ticket_id in (params or ()):
            fired = True
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO tickets_replica_ticket (id, title, price, version) VALUES (%s, %s, %s, %s)",
                    [ticket_id, "other writer", version, version],
                )
        return result

    with connection.execute_wrapper(insert_after_the_lookup):
        yield
    assert fired, "the service never looked the ticket up: nothing was raced"


@pytest.mark.parametrize("kind", ["created", "updated"])
def test_on_the_orm_path_a_ticket_inserted_between_the_lookup_and_the_insert_is_no_fault(kind):
    """The ORM path (MongoDB's) looks the ticket up, then inserts it; another writer may insert it in between.

    The IntegrityError that follows is that writer's row, not a fault: a creation then changes nothing, an
    update is applied over the older row, and the rest of the batch goes on.
    """
    raced, then = new_object_id(), new_object_id()
    change = created(raced, 3) if kind == "created" else updated(raced, 3)

    with another_writer_inserts(raced, version=1):
        result = tickets_apply(changes=[change, created(then, 0)], sql=False)

    if kind == "created":
        assert (replica(raced), result.outcomes[0]) == (("other writer", 1, 1), IGNORED)
    else:
        assert (replica(raced), result.outcomes[0]) == (("v3", 3, 3), APPLIED)
    assert (replica(then), result.outcomes[1]) == (("v0", 0, 0), APPLIED)
