"""The API server as shipped (granian through ticketing_orders.server, or gunicorn with gunicorn.conf.py) on a free port, and raw HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings

from core.ids import new_object_id
from testsupport.processes import free_port
from web.management.commands.mint_token import session_cookie_value

REPO = Path(__file__).resolve().parents[2]
NOT_FOUND = b'{"errors":[{"message":"Not Found"}]}'
TOO_LARGE = b'{"errors":[{"message":"Request body too large"}]}'


class Server:
    """The API server on a free loopback port, on a SQLite file of its own (migrated on start)."""

    def __init__(self, tmp_path: Path, kind: str = "granian", **env: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"{kind}.log"
        self.env = {
            # Whatever the shell (or make) exports for the developer's own server stays out.
            **{k: v for k, v in os.environ.items() if not k.startswith(("GRANIAN_", "GUNICORN_", "PROMETHEUS_"))},
            "DJANGO_SETTINGS_MODULE": "ticketing_orders.settings",
            "JWT_KEY": settings.JWT_KEY,
            "SECRET_KEY": "server-test-secret-key-0123456789abcdef0123456789abcdef",
            "DATA_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'orders.sqlite3'}",
            "GRANIAN_HOST": "127.0.0.1",
            "GRANIAN_PORT": str(self.port),
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": "2",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: subprocess.Popen | None = None
        self.cookie = f"session={session_cookie_value(user_id=new_object_id(), email='server@test.com')}"

    @property
    def command(self) -> list[str]:
        if self.kind == "gunicorn":
            return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "ticketing_orders.wsgi"]
        return [sys.executable, "-m", "ticketing_orders.server"]

    def start(self) -> Server:
        migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
        subprocess.run(migrate, cwd=REPO, env=self.env, check=True, timeout=180)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.kind} did not start: {self.log()[-3000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then (past `timeout`) SIGKILL; the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    @contextlib.contextmanager
    def running(self) -> Iterator[Server]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

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
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


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


def process_tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every process below it (the server's main process and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                children.setdefault(int(stat[stat.rindex(")") + 2 :].split()[1]), []).append(int(entry))
    total, frontier = 0, [pid]
    while frontier:
        current = frontier.pop()
        frontier += children.get(current, [])
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total
