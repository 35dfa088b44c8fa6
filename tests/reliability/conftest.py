"""Fixtures of the fault tests: the scale, a finalizer that stops every process, a PostgreSQL of our own,
a network namespace to blackhole."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from testsupport.netns import Netns, netns_unavailable
from testsupport.postgres import PG_BIN, PostgresServer
from testsupport.processes import Processes

from .support import Scale, current_scale


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
    yield from running_postgres(PostgresServer)


def running_postgres(make: Callable[[], PostgresServer]) -> Iterator[PostgresServer]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN}")
    server = make()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def netns():
    """A network namespace joined to ours by a veth pair; deleted (rules, pair and all) at the end, pass or fail."""
    if reason := netns_unavailable():
        pytest.skip(f"blackhole tests skipped: {reason}")
    namespace = Netns()
    try:
        namespace.create()
        yield namespace
    finally:
        namespace.destroy()


@pytest.fixture
def dark_postgres(netns):
    """A PostgreSQL 15 of the test's own inside `netns`, reached over the veth pair (the socket is the test's)."""
    yield from running_postgres(lambda: PostgresServer(host=netns.ip, prefix=netns.prefix))
