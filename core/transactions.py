"""One place the services take their transaction from, on every database the service supports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from django.db import DEFAULT_DB_ALIAS, connections, transaction

# Databases the services' hand-written statements run on; any other backend (MongoDB) takes the ORM path.
SQL_VENDORS = frozenset({"sqlite", "postgresql"})


def is_mongodb(using: str = DEFAULT_DB_ALIAS) -> bool:
    return connections[using].vendor == "mongodb"


def atomic(using: str = DEFAULT_DB_ALIAS) -> AbstractContextManager:
    """A transaction: Django's atomic(), or django-mongodb-backend's own on MongoDB.

    On MongoDB Django's atomic() is a no-op (the backend reports no transaction support); its
    transaction API runs the block in a session transaction, which needs a replica set.
    """
    if is_mongodb(using):
        from django_mongodb_backend import transaction as mongodb_transaction

        return mongodb_transaction.atomic(using)
    return transaction.atomic(using)


def in_transaction(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether the caller runs inside atomic() (either kind)."""
    connection = connections[using]
    return connection.in_atomic_block or bool(getattr(connection, "in_atomic_block_mongo", False))


def on_commit(func: Callable[[], None], using: str = DEFAULT_DB_ALIAS) -> None:
    """Run `func` once the current transaction commits (at once outside one), on either kind."""
    connections[using].on_commit(func)


def session_options(timeouts: dict[str, int], options: str = "") -> str:
    """libpq's `options` setting the server-side `timeouts` for the session (each in its parameter's unit: ms for
    the timeouts, s for the keepalives); `options` given keeps its own settings, which come last and so win
    (PostgreSQL applies repeated `-c` in order)."""
    ours = " ".join(f"-c {name}={int(value)}" for name, value in timeouts.items())
    return f"{ours} {options}".strip()


def use_database_role(role: str, using: str = DEFAULT_DB_ALIAS) -> None:
    """Give the connections this process opens from now on the server-side timeouts of `role`
    (settings.DATABASE_ROLES): a command calls it first, before its first query.

    The options travel in the connection's start-up packet, so they cost no round trip per request.
    A connection already open is closed so the next one carries them. No-op off PostgreSQL.
    """
    from django.conf import settings

    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    options = connection.settings_dict.setdefault("OPTIONS", {})
    options["options"] = session_options(settings.DATABASE_ROLES[role], settings.DATABASE_URL_OPTIONS)
    connection.close()


@contextmanager
def database_role(role: str, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """`use_database_role` for a block, then the options before it again: `migrate` called from a process
    of another role (the test runner creating its database) leaves that process's timeouts as they were."""
    options = connections[using].settings_dict.get("OPTIONS", {})
    before = options.get("options")
    use_database_role(role, using)
    try:
        yield
    finally:
        if connections[using].vendor == "postgresql":
            options["options"] = before
            connections[using].close()
