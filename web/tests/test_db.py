"""core.transactions: the one place transactions come from, Django's on SQL databases, the backend's own on MongoDB."""

from __future__ import annotations

import pytest
from django.db import connection, connections, transaction

from core import transactions as db

pytestmark = pytest.mark.django_db(transaction=True)  # real commits, not a test-wide atomic block


def test_on_sql_databases_it_is_djangos_atomic():
    assert not db.is_mongodb()
    assert not db.in_transaction()
    with db.atomic():
        assert db.in_transaction()
        assert connection.in_atomic_block
    assert isinstance(db.atomic(), transaction.Atomic)


def test_on_commit_runs_after_the_commit_only():
    ran = []
    with db.atomic():
        db.on_commit(lambda: ran.append("committed"))
        assert ran == []
    assert ran == ["committed"]
    with pytest.raises(RuntimeError), db.atomic():
        db.on_commit(lambda: ran.append("rolled back"))
        raise RuntimeError
    assert ran == ["committed"]


@pytest.fixture
def mongodb_alias():
    """A django-mongodb-backend connection to a MongoDB that is not there (none can run on this machine)."""
    base = pytest.importorskip("django_mongodb_backend.base")
    from testsupport.processes import free_port

    settings_dict = {
        **connections["default"].settings_dict,
        "ENGINE": "django_mongodb_backend",
        "NAME": "orders",
        "HOST": f"mongodb://127.0.0.1:{free_port()}/orders?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
        "OPTIONS": {},
        "USER": "",
        "PASSWORD": "",
        "PORT": "",
    }
    connections["mongo"] = base.DatabaseWrapper(settings_dict, alias="mongo")
    yield "mongo"
    connections["mongo"].close()
    del connections["mongo"]


def test_on_mongodb_it_is_the_backends_transaction_api(mongodb_alias):
    from django_mongodb_backend.transaction import Atomic as MongoAtomic
    from pymongo.errors import ServerSelectionTimeoutError

    assert db.is_mongodb(mongodb_alias)
    # Django's own atomic() does nothing there (the backend reports no transactions)...
    assert connections[mongodb_alias].features.supports_transactions is False
    # ...so the services get the backend's, which opens a session transaction on the server.
    assert isinstance(db.atomic(mongodb_alias), MongoAtomic)
    with pytest.raises(ServerSelectionTimeoutError), db.atomic(mongodb_alias):
        pass  # starting the transaction needs the (absent) replica set
    assert not db.in_transaction(mongodb_alias)


def test_readiness_pings_mongodb_and_says_when_it_does_not_answer(mongodb_alias):
    from web.health_checks import MongoDatabase

    with pytest.raises(Exception, match="MongoDB did not answer ping: ServerSelectionTimeoutError"):
        MongoDatabase(alias=mongodb_alias).run()


def test_readiness_runs_select_1_on_sql_databases():
    from web.health_checks import readiness_checks

    assert readiness_checks() == ("health_check.checks.Database",)


postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="server-side timeouts are PostgreSQL's")


def show(setting: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {setting}")
        return cursor.fetchone()[0]


@postgresql_only
def test_api_connections_carry_bounded_waits_and_a_command_can_pick_its_role():
    assert (show("statement_timeout"), show("lock_timeout"), show("idle_in_transaction_session_timeout")) == (
        "5s",
        "3s",
        "10s",
    )
    assert show("tcp_user_timeout") == "0"  # the server's own; ours is the client socket's
    # The server's keepalives on this TCP connection: a client gone silent mid-transaction frees its locks.
    assert (show("tcp_keepalives_idle"), show("tcp_keepalives_interval"), show("tcp_keepalives_count")) == (
        "3",
        "1",
        "3",
    )
    try:
        db.use_database_role("migrate")
        assert show("statement_timeout") == "0"  # migrations are never cut short
        db.use_database_role("worker")
        assert show("statement_timeout") == "30s"
    finally:
        db.use_database_role("api")
    assert show("statement_timeout") == "5s"


@postgresql_only
def test_a_statement_cut_by_its_timeout_is_service_unavailable_not_a_fault():
    from django.db import OperationalError

    from web.errors import ServiceUnavailable, api_exception_for

    with pytest.raises(OperationalError) as raised, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 50")
        cursor.execute("SELECT pg_sleep(2)")
    assert "statement timeout" in str(raised.value)
    assert isinstance(api_exception_for(raised.value), ServiceUnavailable)
