"""Fixtures of the fault tests: the scale, a finalizer that stops every process, a PostgreSQL of our own."""

from __future__ import annotations

import pytest

from .support import PG_BIN, PostgresServer, Processes, Scale, current_scale


@pytest.fixture(scope="session")
def scale() -> Scale:
    return current_scale()


@pytest.fixture
def processes(tmp_path):
    """Start children through this; each is stopped (its whole process group) when the test ends, pass or fail."""
    registry = Processes(tmp_path)
    yield registry
    registry.close()


@pytest.fixture
def postgres_server():
    """A PostgreSQL 15 cluster of the test's own (Debian's binaries), destroyed with its files at the end."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN}")
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()
