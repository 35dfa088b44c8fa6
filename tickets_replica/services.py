"""Changes to the ticket replica, driven by the tickets service's events: the newest version wins."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence

from django.db import IntegrityError, connection, transaction

from core.transactions import atomic
from tickets_replica.models import Ticket


class ReplicaOutcome(enum.Enum):
    APPLIED = "applied"
    IGNORED = "ignored"  # a repeat, an older or equal version, or a creation of a ticket already there


@dataclasses.dataclass(frozen=True)
class TicketChange:
    """One `ticket:created` (`created=True`: insert unless there) or `ticket:updated` (newest wins)."""

    id: str
    title: str
    price: float
    version: int
    created: bool = False


@dataclasses.dataclass
class ReplicaBatchResult:
    """What a batch did: an outcome per change (in order) and the tickets it created, updated or left alone."""

    outcomes: list[ReplicaOutcome]
    created: set[str]
    updated: set[str]
    unchanged: set[str]


# Parameterized, and the same text on PostgreSQL and SQLite (ON CONFLICT since 3.24, RETURNING since 3.35).
# RETURNING names the rows the statement changed: a conditional write's answer to "who won".
INSERT_MISSING_SQL = (
    "INSERT INTO tickets_replica_ticket (id, title, price, version) VALUES {rows} "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)
UPSERT_NEWER_SQL = (
    "INSERT INTO tickets_replica_ticket (id, title, price, version) VALUES {rows} "
    "ON CONFLICT (id) DO UPDATE SET title = excluded.title, price = excluded.price, version = excluded.version "
    "WHERE excluded.version > tickets_replica_ticket.version RETURNING id"
)


def _execute_rows(sql: str, changes: Sequence[TicketChange]) -> set[str]:
    """Run `sql` with one VALUES row per change (distinct ids), in as few statements as parameters allow."""
    per_statement = min((connection.features.max_query_params or 4000) // 4, 1000)
    changed: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(changes), per_statement):
            chunk = changes[start : start + per_statement]
            params = [value for c in chunk for value in (c.id, c.title, c.price, c.version)]
            # Only placeholders are formatted in: every value is a parameter.
            cursor.execute(sql.format(rows=", ".join(["(%s, %s, %s, %s)"] * len(chunk))), params)
            changed.update(row[0] for row in cursor.fetchall())
    return changed


def tickets_insert_missing(changes: Sequence[TicketChange]) -> set[str]:
    """`ticket:created`: insert each ticket unless it is already there; returns the ids inserted."""
    return _execute_rows(INSERT_MISSING_SQL, changes)


def tickets_upsert_newer(changes: Sequence[TicketChange]) -> set[str]:
    """`ticket:updated`: insert, or overwrite a row only with a greater version; returns the ids written."""
    return _execute_rows(UPSERT_NEWER_SQL, changes)


def _ticket_versions(ids: Iterable[str]) -> dict[str, int]:
    return dict(Ticket.objects.filter(id__in=list(ids)).values_list("id", "version"))


def _inserted_by_someone_else(ticket_id: str) -> bool:
    """After an IntegrityError: a concurrent insert of the ticket, or a real fault (re-raised)."""
    return Ticket.objects.filter(id=ticket_id).exists()


def _tickets_insert_missing_orm(changes: Sequence[TicketChange]) -> set[str]:
    """`tickets_insert_missing` for backends without ON CONFLICT ... RETURNING (MongoDB)."""
    changed = set()
    for change in changes:
        # Looked up first: inside a MongoDB transaction a duplicate-key error aborts the whole transaction.
        if Ticket.objects.filter(id=change.id).exists():
            continue
        try:
            with transaction.atomic():
                Ticket.objects.create(id=change.id, title=change.title, price=change.price, version=change.version)
        except IntegrityError:
            if _inserted_by_someone_else(change.id):
                continue  # already there: a creation changes nothing
            raise
        changed.add(change.id)
    return changed


def _tickets_upsert_newer_orm(changes: Sequence[TicketChange]) -> set[str]:
    """`tickets_upsert_newer` for backends without ON CONFLICT ... RETURNING (MongoDB)."""
    changed = set()
    for change in changes:
        fields = {"title": change.title, "price": change.price, "version": change.version}
        # The conditional UPDATE's row count decides; a ticket that is not there is inserted, and a
        # concurrent insert (IntegrityError) gets the conditional UPDATE once more.
        for _ in range(2):
            if Ticket.objects.filter(id=change.id, version__lt=change.version).update(**fields):
                changed.add(change.id)
                break
            if Ticket.objects.filter(id=change.id).exists():
                break  # as new or newer already
            try:
                with transaction.atomic():
                    Ticket.objects.create(id=change.id, **fields)
            except IntegrityError:
                if _inserted_by_someone_else(change.id):
                    continue
                raise
            changed.add(change.id)
            break
    return changed


def _uses_sql_upsert() -> bool:
    if connection.vendor == "postgresql":
        return True
    return connection.vendor == "sqlite" and connection.Database.sqlite_version_info >= (3, 35)


def tickets_apply(*, changes: Sequence[TicketChange], sql: bool | None = None) -> ReplicaBatchResult:
    """Apply a batch of ticket events in one transaction, with the result of applying them one by one.

    Per ticket, only the first event can matter if it is a creation (a later one finds the ticket
    there), and only the newest update (the first of equal versions): the batch sends those through
    the two monotone statements, which also make a concurrent writer (another worker, a rebuild) safe.
    `sql` forces the SQL (True) or the ORM path (False); by default the backend decides.
    """
    sql = _uses_sql_upsert() if sql is None else sql
    inserts: dict[str, TicketChange] = {}
    updates: dict[str, TicketChange] = {}
    seen: set[str] = set()
    for change in changes:
        if change.created:
            if change.id not in seen:
                inserts[change.id] = change
        elif change.id not in updates or change.version > updates[change.id].version:
            updates[change.id] = change
        seen.add(change.id)

    with atomic():
        before = _ticket_versions(seen)
        changed: set[str] = set()
        if inserts:
            changed |= (tickets_insert_missing if sql else _tickets_insert_missing_orm)(list(inserts.values()))
        if updates:
            changed |= (tickets_upsert_newer if sql else _tickets_upsert_newer_orm)(list(updates.values()))

    # Which events of a changed ticket applied, as one by one from the versions read first; a ticket
    # the statements did not change (a concurrent writer got there first) applied none of them.
    current: dict[str, int] = dict(before)
    outcomes: list[ReplicaOutcome] = []
    for change in changes:
        there = change.id in current
        if change.id in changed and (not there or (not change.created and change.version > current[change.id])):
            current[change.id] = change.version
            outcomes.append(ReplicaOutcome.APPLIED)
        else:
            outcomes.append(ReplicaOutcome.IGNORED)
    return ReplicaBatchResult(
        outcomes=outcomes,
        created=changed - before.keys(),
        updated=changed & before.keys(),
        unchanged=seen - changed,
    )


def ticket_create(*, id: str, title: str, price: float, version: int) -> ReplicaOutcome:
    """Insert the ticket unless it is already there (a repeat, or a later `ticket:updated` came first)."""
    change = TicketChange(id=id, title=title, price=price, version=version, created=True)
    return tickets_apply(changes=[change]).outcomes[0]


def ticket_apply_update(*, id: str, title: str, price: float, version: int) -> ReplicaOutcome:
    """Apply the whole ticket if `version` is newer than the replica's (inserting it if missing)."""
    change = TicketChange(id=id, title=title, price=price, version=version)
    return tickets_apply(changes=[change]).outcomes[0]
