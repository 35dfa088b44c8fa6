"""One place the services take their transaction from, on every database the service supports."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

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
