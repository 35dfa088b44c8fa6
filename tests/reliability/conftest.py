"""Fixtures of the fault tests: the scale, a finalizer that stops every process, a PostgreSQL of our own,
a network namespace to blackhole, the service started on the test's own servers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from testsupport.netns import Netns, netns_unavailable
from testsupport.postgres import PG_BIN, PostgresServer
from testsupport.processes import Child, Processes
from testsupport.service import Api, migrate, start_api, start_worker
from testsupport.testrun import JetStream

from .support import Scale, current_scale, fault_env, jetstream_for


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


@dataclass
class ServiceUnderFault:
    """The service as deployed on the test's own servers: its API servers and its workers."""

    processes: Processes
    nats_url: str
    apis: list[Api]
    workers: list[Child]

    @property
    def api(self) -> Api:
        return self.apis[0]

    @property
    def worker(self) -> Child:
        return self.workers[0]

    @functools.cached_property
    def jetstream(self) -> JetStream:
        """The test's own client of the service's NATS, made on first use: a test that must reach one node
        of a cluster in particular makes its own with `jetstream_for`."""
        return jetstream_for(self.processes, self.nats_url)


@pytest.fixture
def start_service(processes) -> Callable[..., ServiceUnderFault]:
    """Starts the service on `database_url` and `nats_url` as a deployment does: `migrate`, then `apis` API
    servers and `workers` workers (`api`/`worker`, or `api-1`, `api-2`... when more than one), each waited
    for until it answers or listens; `extra` adds to their environment (`fault_env`). Stopped with the test's
    processes."""

    def start(*, database_url: str, nats_url: str, apis: int = 1, workers: int = 1, **extra: str) -> ServiceUnderFault:
        env = fault_env(database_url=database_url, nats_url=nats_url, data_dir=processes.workdir, **extra)
        migrate(env)
        return ServiceUnderFault(
            processes,
            nats_url,
            apis=[start_api(processes, name, env) for name in process_names("api", apis)],
            workers=[start_worker(processes, name, env) for name in process_names("worker", workers)],
        )

    return start


def process_names(role: str, number: int) -> list[str]:
    return [role] if number == 1 else [f"{role}-{n}" for n in range(1, number + 1)]
