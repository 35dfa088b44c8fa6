"""The API server as shipped (testsupport.service.start_api) on a SQLite file of its own, and raw HTTP requests to it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from core.ids import new_object_id
from testsupport.http import session_cookie
from testsupport.processes import Processes
from testsupport.service import Api, migrate, service_env, start_api

NOT_FOUND = b'{"errors":[{"message":"Not Found"}]}'
TOO_LARGE = b'{"errors":[{"message":"Request body too large"}]}'


class Server:
    """`kind` ("granian", the default server, or "gunicorn") on a free loopback port, production settings on a
    SQLite file in `tmp_path` (migrated on start); `env` on top of the service's environment."""

    def __init__(self, tmp_path: Path, kind: str = "granian", **env: str) -> None:
        self.kind = kind
        self.workers = int(env.pop("WEB_CONCURRENCY", "2"))
        self.env = service_env(
            database_url=f"sqlite:///{tmp_path / 'orders.sqlite3'}",
            data_dir=tmp_path,
            jwt_key=settings.JWT_KEY,
            secret_key="server-test-secret-key-0123456789abcdef0123456789abcdef",
            **env,
        )
        self.processes = Processes(tmp_path)
        self.api: Api | None = None
        self.user_id = new_object_id()  # who `cookie` signs in
        self.cookie = session_cookie(self.user_id, jwt_key=settings.JWT_KEY, email="server@test.com")

    def start(self) -> Server:
        migrate(self.env)
        self.api = start_api(self.processes, self.kind, self.env, server=self.kind, workers=self.workers)
        return self

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then (past `timeout`) SIGKILL; the exit status."""
        return self.processes.stop(self.api.child, timeout) if self.api else None

    @contextlib.contextmanager
    def running(self) -> Iterator[Server]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    @property
    def process(self) -> subprocess.Popen:
        return self.api.child.process

    @property
    def port(self) -> int:
        return self.api.port

    @property
    def base(self) -> str:
        return self.api.url

    def log(self) -> str:
        return self.api.child.log() if self.api else ""

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
