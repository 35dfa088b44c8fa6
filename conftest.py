"""Fixtures shared by every test: API client, signed-in users, tickets, a real nats-server."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from core.ids import new_object_id
from tests.contract.published import Checked, assert_published_events_conform
from testsupport.nats import NatsServer
from testsupport.processes import Child, Processes
from testsupport.service import start_worker
from testsupport.testrun import JetStream, WorkerThread, worker_env
from tickets_replica.models import Ticket
from web.handlers import OrdersWSGIRequest
from web.management.commands.mint_token import session_cookie_value


@pytest.fixture(autouse=True, scope="session")
def production_request_class():
    """Every test client builds the request class production serves (web.handlers.OrdersWSGIRequest).

    Django's test client builds `django.test.client.WSGIRequest` itself rather than going through
    WSGI_APPLICATION; rebinding that name is the one hook short of copying ClientHandler.__call__.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("django.test.client.WSGIRequest", OrdersWSGIRequest)
        yield


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def make_user():
    """Return a function making (user_id, cookie header value) for a fresh random user."""

    def make(user_id: str | None = None) -> tuple[str, str]:
        user_id = user_id or new_object_id()
        return user_id, f"session={session_cookie_value(user_id=user_id, email=f'{user_id}@test.com')}"

    return make


def client_for_new_user(make_user) -> APIClient:
    user_id, cookie = make_user()
    client = APIClient(HTTP_COOKIE=cookie)
    client.user_id = user_id
    return client


@pytest.fixture
def signed_in(make_user) -> APIClient:
    """An API client carrying a session cookie for a fresh random user (`.user_id` says who)."""
    return client_for_new_user(make_user)


@pytest.fixture
def other_user(make_user) -> APIClient:
    """Another signed-in user, beside `signed_in`."""
    return client_for_new_user(make_user)


@pytest.fixture
def make_ticket(db):
    def make(**fields) -> Ticket:
        values = {"id": new_object_id(), "title": "concert", "price": 20, "version": 0, **fields}
        return Ticket.objects.create(**values)

    return make


@pytest.fixture(scope="session")
def shared_nats_server(tmp_path_factory) -> Iterator[NatsServer]:
    """One nats-server with JetStream for the session; each test gets it with its streams deleted after."""
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture
def nats_server(request, tmp_path, settings) -> Iterator[NatsServer]:
    """A real nats-server with JetStream; settings.NATS_URL points at it.

    The session's shared server, whose streams (and so consumers) the test leaves behind are deleted at
    its end; a test marked `own_nats_server` (one that stops, kills or restarts it) gets a fresh one.
    Whatever the test made the service publish must be what docs/asyncapi.json promises.
    """
    own = request.node.get_closest_marker("own_nats_server") is not None
    server = NatsServer(tmp_path).start() if own else request.getfixturevalue("shared_nats_server")
    settings.NATS_URL = server.url
    yield server
    if server.running():
        assert_published_events_conform(server.url)
    if own:
        server.stop()
    else:
        assert server.running(), "a test stopped the shared nats-server: mark it own_nats_server"
        cleaner = JetStream(server.url, name="tests-cleanup")
        try:
            cleaner.delete_streams()
        finally:
            cleaner.close()


@pytest.fixture
def jetstream(nats_server) -> Iterator[JetStream]:
    """A nats-py client of the test's nats-server, callable from synchronous tests."""
    client = JetStream(nats_server.url)
    yield client
    client.close()


@pytest.fixture
def run_worker(transactional_db, nats_server, jetstream, monkeypatch):
    """Start `messaging.worker.Worker`s in background threads (all listeners unless given).

    The worker's ORM work runs on another thread, hence the real transactions. Every worker
    is stopped (and must stop cleanly) at the end of the test.
    """
    from messaging import worker as worker_module

    # A stop waits for the fetch in flight; a short one keeps the suite quick.
    monkeypatch.setattr(worker_module, "FETCH_TIMEOUT_SECONDS", 0.25)
    started: list[WorkerThread] = []

    def start(listeners=None) -> WorkerThread:
        worker = WorkerThread(listeners)
        started.append(worker)
        return worker.start(jetstream)

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def worker_process(transactional_db, nats_server, tmp_path) -> Iterator[Callable[..., Child]]:
    """Start `python manage.py run_listeners` on the test database (test settings; `env` on top), waited for
    until it listens; its metrics on `child.metrics_port`, its log in a file of its own. All stopped at the end."""
    processes = Processes(tmp_path)
    runs = itertools.count(1)

    def start(**env: str) -> Child:
        return start_worker(processes, f"run_listeners-{next(runs)}", worker_env(nats_server.url, **env))

    yield start
    processes.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault scenarios first, then the other suites of tests/ (servers as child processes): they take
    seconds to a minute each, mostly waiting, and started first on the pytest-xdist workers (make test,
    which hands out one test at a time: --maxschedchunk 1) they run beside each other and the apps'
    quick tests instead of after them."""
    items.sort(key=lambda item: (item.get_closest_marker("reliability") is None, not item.nodeid.startswith("tests/")))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """A pytest-xdist worker's counts of checked events, added up for the summary."""
    events, servers = getattr(node, "workeroutput", {}).get("asyncapi_checked", (0, 0))
    Checked.events, Checked.servers = Checked.events + events, Checked.servers + servers


def pytest_terminal_summary(terminalreporter):
    if Checked.servers:
        terminalreporter.write_line(
            f"asyncapi: {Checked.events} published events on {Checked.servers} nats-servers conform to docs/asyncapi.json"
        )


def pytest_sessionfinish(session, exitstatus):
    """Remove the SQLite test database's -wal/-shm files, which persistent connections can leave behind;
    on a pytest-xdist worker, hand its counts of checked events to the controller."""
    from django.conf import settings

    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["asyncapi_checked"] = (Checked.events, Checked.servers)

    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)
