"""Clients that trickle their requests never starve the others, and normal requests still behave (gunicorn as configured)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings

from core.ids import new_object_id
from messaging.embedded import free_port
from web.management.commands.mint_token import session_cookie_value

REPO = Path(__file__).resolve().parents[2]
SLOW_CLIENTS = int(os.environ.get("SLOW_CLIENTS", "50"))
HOLD_SECONDS = float(os.environ.get("SLOW_CLIENT_HOLD_SECONDS", "6"))
# Generous: a normal request takes milliseconds; a starved one waits as long as the slow clients hold on.
BOUND_SECONDS = 2.0
NOT_FOUND = b'{"errors":[{"message":"Not Found"}]}'
TOO_LARGE = b'{"errors":[{"message":"Request body too large"}]}'


class Server:
    """gunicorn with the project's gunicorn.conf.py on a free loopback port, on a SQLite file of its own."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "gunicorn.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "ticketing_orders.settings",
            "JWT_KEY": settings.JWT_KEY,
            "SECRET_KEY": "slow-client-test-secret-key-0123456789abcdef0123456789",
            "DATA_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'orders.sqlite3'}",
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": "2",
            **env,
        }
        user_id = new_object_id()
        self.cookie = f"session={session_cookie_value(user_id=user_id, email='slow@test.com')}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Server]:
        migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
        subprocess.run(migrate, cwd=REPO, env=self.env, check=True)
        gunicorn = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--access-logfile", "/dev/null"]
        with open(self.log_path, "wb") as log:
            process = subprocess.Popen(
                [*gunicorn, "ticketing_orders.wsgi"], cwd=REPO, env=self.env, stdout=log, stderr=log
            )
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not start: {self.log_path.read_text()[-3000:]}")
                time.sleep(0.1)
            yield self
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def post_head(self, length: int | None = None, extra: str = "") -> bytes:
        framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
        return (
            f"POST /api/orders HTTP/1.1\r\nHost: localhost\r\nCookie: {self.cookie}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n{extra}\r\n"
        ).encode()

    def get_request(self, path: str = "/api/orders") -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {self.cookie}\r\n\r\n".encode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Responses:
    """Reads HTTP/1.1 responses (Content-Length framed, as Django's are) one after the other from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(self.buf)
        self.buf += data

    def next(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *fields = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, value in (field.split(":", 1) for field in fields)}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        """Whether the server closes the connection now (nothing more comes)."""
        try:
            return not self.buf and not self.sock.recv(1)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def chunked(body: bytes, size: int) -> bytes:
    pieces = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(pieces) + b"0\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("server")).running() as running:
        yield running


def hold_slow_connection(server: Server, kind: str, until: float) -> None:
    """Keep one connection open that sends a request as slowly as it can, reconnecting when dropped."""
    body = b'{"ticketId": "' + new_object_id().encode() + b'"}'
    head = server.post_head(len(body))

    def trickle(sock: socket.socket, data: bytes) -> None:  # one byte a second
        for byte in data:
            if time.monotonic() >= until:
                return
            sock.sendall(bytes([byte]))
            time.sleep(1)

    while time.monotonic() < until:
        try:
            with server.connect() as sock:
                if kind == "headers":
                    trickle(sock, head)
                elif kind == "body":
                    sock.sendall(head)
                    trickle(sock, body[:-1])
                elif kind == "chunked":  # one-byte chunks, never the last one
                    sock.sendall(server.post_head())
                    trickle(sock, chunked(body, 1)[:-5])
                elif kind == "keepalive":  # a quick request, then the next one on that connection trickles
                    sock.sendall(server.get_request())
                    assert Responses(sock).next()[0] == 200
                    trickle(sock, head)
                else:  # the headers with a Content-Length, then nothing
                    sock.sendall(head)
                    while time.monotonic() < until:
                        time.sleep(0.2)
                # Not sent completely: wait to be dropped, or for the end.
                sock.settimeout(max(until - time.monotonic(), 0.01))
                with contextlib.suppress(OSError):
                    sock.recv(1)
        except OSError:
            time.sleep(0.1)


def test_slow_clients_do_not_starve_the_others(server):
    base, cookie = server.base, server.cookie
    until = time.monotonic() + HOLD_SECONDS
    kinds = ("headers", "body", "stall", "chunked", "keepalive")
    slow = [
        threading.Thread(target=hold_slow_connection, args=(server, kinds[i % len(kinds)], until), daemon=True)
        for i in range(SLOW_CLIENTS)
    ]
    for thread in slow:
        thread.start()
    time.sleep(min(1.0, HOLD_SECONDS / 4))  # let them connect and start trickling

    calls = {
        "healthz": (lambda s: s.get(f"{base}/healthz", timeout=30), 200),
        "list": (lambda s: s.get(f"{base}/api/orders", headers={"Cookie": cookie}, timeout=30), 200),
        "get": (lambda s: s.get(f"{base}/api/orders/{new_object_id()}", headers={"Cookie": cookie}, timeout=30), 404),
        "post": (
            lambda s: s.post(
                f"{base}/api/orders", json={"ticketId": new_object_id()}, headers={"Cookie": cookie}, timeout=30
            ),
            404,
        ),
    }
    results: list[tuple[str, float, int | str]] = []

    def keep_calling(name: str) -> None:
        call, _ = calls[name]
        with requests.Session() as session:
            while time.monotonic() < until:
                started = time.monotonic()
                try:
                    status: int | str = call(session).status_code
                except requests.RequestException as exc:
                    status = repr(exc)
                results.append((name, time.monotonic() - started, status))
                time.sleep(0.05)

    normal = [threading.Thread(target=keep_calling, args=(name,)) for name in calls]
    for thread in normal:
        thread.start()
    for thread in normal:
        thread.join()
    for thread in slow:
        thread.join(timeout=5)

    durations = sorted(duration for _, duration, _ in results)
    p99 = durations[int(0.99 * (len(durations) - 1))]
    healthz = sorted(duration for name, duration, _ in results if name == "healthz")
    print(
        f"{len(results)} requests beside {SLOW_CLIENTS} slow clients for {HOLD_SECONDS:g} s: "
        f"p50 {durations[len(durations) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {durations[-1] * 1000:.1f} ms; "
        f"healthz p99 {healthz[int(0.99 * (len(healthz) - 1))] * 1000:.1f} ms"
    )
    for name, (_, expected) in calls.items():
        answered = [(duration, status) for n, duration, status in results if n == name]
        assert answered, f"no {name} request finished"
        assert [status for _, status in answered if status != expected] == [], name
        assert max(duration for duration, _ in answered) < BOUND_SECONDS, name


def test_bodies_keepalive_and_pipelining(server):
    """Length-framed, chunked (with a trailer) and 100-continue bodies, in turn and pipelined, on one connection."""
    body = b'{"ticketId": "' + new_object_id().encode() + b'"}'
    with server.connect() as sock:
        responses = Responses(sock)
        sock.sendall(server.post_head(len(body)) + body)
        assert responses.next()[::2] == (404, NOT_FOUND)  # the ticket is unknown: the body was read
        sock.sendall(server.post_head() + chunked(body, 5))
        assert responses.next()[::2] == (404, NOT_FOUND)
        sock.sendall(server.post_head() + chunked(body, 7)[:-2] + b"X-Checksum: 1\r\n\r\n")
        assert responses.next()[::2] == (404, NOT_FOUND)
        # Two requests in one send, the first one chunked, then a request split across sends.
        sock.sendall(server.post_head() + chunked(body, 3) + server.get_request() + server.post_head(len(body)))
        assert responses.next()[::2] == (404, NOT_FOUND)
        assert responses.next()[::2] == (200, b"[]")
        time.sleep(0.3)
        sock.sendall(body[:10])
        time.sleep(0.3)
        sock.sendall(body[10:])
        assert responses.next()[::2] == (404, NOT_FOUND)
        sock.sendall(server.post_head(len(body), extra="Expect: 100-continue\r\n"))
        assert responses.next()[0] == 100
        sock.sendall(body)
        status, headers, answer = responses.next()
        assert (status, answer, headers["connection"]) == (404, NOT_FOUND, "keep-alive")
    with requests.Session() as session:  # an ordinary client's chunked body (a generator)
        response = session.post(
            f"{server.base}/api/orders",
            data=iter([body[:8], body[8:]]),
            headers={"Cookie": server.cookie, "Content-Type": "application/json"},
        )
        assert (response.status_code, response.content) == (404, NOT_FOUND)


def test_body_over_the_limit_is_refused_at_once_and_holds_no_thread(server):
    """413 as soon as the limit is passed, whatever the client still sends; meanwhile the others are served."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    until = time.monotonic() + 3
    answers: list[tuple[str, int, str, bytes, bool]] = []

    def oversized(kind: str) -> None:
        with server.connect() as sock:
            if kind == "length":  # announced too large: refused from the headers
                sock.sendall(server.post_head(limit + 1) + b'{"ticketId": ')
            else:  # chunked: refused once one byte past the limit has arrived
                sock.sendall(server.post_head() + chunked(b"x" * (limit + 1), 65536)[:-5])
            responses = Responses(sock)
            status, headers, body = responses.next()
            # The rest of the body trickles on: the answer must not wait for it, nor a thread.
            with contextlib.suppress(OSError):
                while time.monotonic() < until:
                    sock.sendall(b"1")
                    time.sleep(0.2)
            answers.append((kind, status, headers["connection"], body, responses.closed()))

    clients = [threading.Thread(target=oversized, args=(("length", "chunked")[i % 2],)) for i in range(12)]
    for client in clients:
        client.start()
    time.sleep(0.5)
    probes = []
    with requests.Session() as session:
        while time.monotonic() < until:
            started = time.monotonic()
            probes.append((session.get(f"{server.base}/healthz", timeout=30).status_code, time.monotonic() - started))
            time.sleep(0.05)
    for client in clients:
        client.join()
    assert sorted(answers) == sorted((kind, 413, "close", TOO_LARGE, True) for kind, *_ in answers)
    assert len(answers) == 12
    assert {status for status, _ in probes} == {200}
    assert max(duration for _, duration in probes) < BOUND_SECONDS


def test_a_request_not_sent_within_the_deadline_is_dropped_quietly(tmp_path):
    with Server(tmp_path, REQUEST_READ_TIMEOUT="1").running() as server:
        body = b'{"ticketId": "' + new_object_id().encode() + b'"}'
        stalled_head = server.connect()
        stalled_head.sendall(server.post_head(len(body))[:20])
        stalled_body = server.connect()
        stalled_body.sendall(server.post_head(len(body)) + body[:5])
        kept_alive = server.connect()
        kept_alive.sendall(server.get_request())
        assert Responses(kept_alive).next()[0] == 200
        kept_alive.sendall(server.post_head(len(body)))
        trickling = server.connect()  # never idle, but never done: the deadline is for the whole request
        trickling.sendall(server.post_head(len(body)))
        with contextlib.suppress(OSError):
            for byte in body[:30]:  # for 3 s
                trickling.sendall(bytes([byte]))
                time.sleep(0.1)
        for sock in (stalled_head, stalled_body, trickling, kept_alive):
            sock.settimeout(3)
            assert Responses(sock).closed()
            sock.close()
        assert requests.get(f"{server.base}/healthz", timeout=5).status_code == 200
        log = server.log()
        assert log.count("Booting worker") == 2, log  # no worker was killed or replaced
        assert "[ERROR]" not in log and "Traceback" not in log and "CRITICAL" not in log, log
