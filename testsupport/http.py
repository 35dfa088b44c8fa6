"""HTTP as the service's clients speak it: the auth service's cookie, timed requests, raw framing, and the
Prometheus text an operator's scraper reads."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests

# Every route of the orders API, as (method, path): what each must answer alike (401 signed out, 503
# with the database away).
API_ROUTES = [
    ("get", "/api/orders"),
    ("post", "/api/orders"),
    ("get", "/api/orders/65f0c0ffee0000000000abcd"),
    ("delete", "/api/orders/65f0c0ffee0000000000abcd"),
]


def session_cookie(user_id: str, *, jwt_key: str, email: str | None = None) -> str:
    """`session=...` as the auth service sets it (contract section 3): base64 JSON {"jwt": HS256 token}."""
    claims = {"id": user_id, "email": email or f"{user_id}@test.com", "iat": int(time.time())}
    token = jwt.encode(claims, jwt_key, algorithm="HS256")
    return "session=" + base64.b64encode(json.dumps({"jwt": token}, separators=(",", ":")).encode()).decode()


def post_order(base_url: str, ticket_id: str, cookie: str) -> tuple[int, Any]:
    """One create on a connection of its own: a reused keep-alive connection that gunicorn closes after
    its 2 s keepalive can be reset under the client's feet, which says nothing about the service."""
    response = requests.post(
        f"{base_url}/api/orders",
        json={"ticketId": ticket_id},
        headers={"Cookie": cookie, "Connection": "close"},
        timeout=60,
    )
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return response.status_code, body


@dataclass
class Answer:
    """One HTTP exchange as the client saw it: when it was sent and answered, status and body
    (status 0: no answer, e.g. the client's own timeout)."""

    started: float
    ended: float
    status: int
    body: Any

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def timed_get(url: str, *, timeout: float = 30) -> Answer:
    started = time.monotonic()
    try:
        response = requests.get(url, timeout=timeout, headers={"Connection": "close"})
    except requests.RequestException as exc:
        return Answer(started, time.monotonic(), 0, type(exc).__name__)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return Answer(started, time.monotonic(), response.status_code, body)


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


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text `text` (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape(port: int) -> str:
    """GET /metrics on a loopback port (a worker's WORKER_METRICS_PORT, an API server's port)."""
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    response.raise_for_status()
    return response.text
