"""gunicorn's gthread worker, with each whole request read by the poller before a thread serves it."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import selectors
import socket
import time
from collections import deque
from functools import partial

from gunicorn import util
from gunicorn.http.unreader import Unreader
from gunicorn.workers.gthread import TConn, ThreadWorker

# A client gets this long to send one request, headers and body, counted from its connection (the
# first request) or from its first byte (the next ones on a kept-alive connection); then it is dropped.
REQUEST_READ_TIMEOUT = float(os.environ.get("REQUEST_READ_TIMEOUT", "10"))
# Django's own default, used when the settings cannot say (DATA_UPLOAD_MAX_MEMORY_SIZE).
DEFAULT_BODY_LIMIT = 2_621_440
RECV_SIZE = 65536
# What gunicorn's close_graceful() allows a closing client to still send, but waited for in the poller.
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 65536
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
HEX = re.compile(rb"[0-9A-Fa-f]+")


class RequestScan:
    """Where the first request in a growing buffer ends, worked out as its bytes arrive.

    Only the framing is read (head end, Content-Length, chunk sizes); gunicorn's parser still
    validates everything in the thread. Whatever this scan cannot follow (conflicting or malformed
    framing, a head or body past the limits) is handed over at once: gunicorn or Django then refuses
    it from the bytes already there (400, 413), and the connection is closed after the answer.
    """

    __slots__ = (
        "body_limit",
        "chunk_at",
        "decoded",
        "end",
        "expects_continue",
        "head_cap",
        "line_cap",
        "partial",
        "searched",
    )

    def __init__(self, head_cap: int, line_cap: int, body_limit: int) -> None:
        self.head_cap = head_cap
        self.line_cap = line_cap
        self.body_limit = body_limit
        self.searched = 0  # how far the head's end has been looked for
        self.end = -1  # the request's last byte + 1, once known
        self.chunk_at = -1  # the next chunk-size line of a chunked body
        self.decoded = 0  # body bytes in the chunks already passed
        self.partial = False  # handed over before its end: nothing after it on the connection can be trusted
        self.expects_continue = False

    def complete(self, buf: bytearray) -> bool:
        """Whether a thread can take the request now (it is all in `buf`, or it will be refused as it is)."""
        if self.end >= 0:
            return len(buf) >= self.end
        if self.chunk_at >= 0:
            return self._chunks(buf)
        head_end = buf.find(b"\r\n\r\n", max(self.searched - 3, 0))
        if head_end < 0:
            self.searched = len(buf)
            return self._hand_over(len(buf) > self.head_cap)
        head = bytes(buf[:head_end]).lower()
        body_at = head_end + 4
        # Most requests (every GET) end here: two substring tests and no header parsing.
        has_length = b"\ncontent-length:" in head
        if b"\ntransfer-encoding:" in head:
            codings = b",".join(_field_values(head, b"\ntransfer-encoding:")).split(b",")
            if has_length or codings[-1].strip(b" \t") != b"chunked":
                return self._hand_over(True)  # gunicorn answers 400 or 501
            self.chunk_at = body_at
        elif has_length:
            values = _field_values(head, b"\ncontent-length:")
            if len(values) != 1 or not values[0].isdigit():
                return self._hand_over(True)  # gunicorn answers 400
            length = int(values[0])
            if length > self.body_limit:
                return self._hand_over(True)  # Django answers 413 without reading the body
            self.end = body_at + length
        else:
            self.end = body_at
            return True
        done = self.complete(buf)
        # A client that waits for "100 Continue" before its body would otherwise wait until the deadline.
        if not done and b"\nexpect: 100-continue" in head and head[: head.find(b"\r\n")].endswith(b"http/1.1"):
            self.expects_continue = True
        return done

    def _chunks(self, buf: bytearray) -> bool:
        # Chunk data is skipped by arithmetic, so a large body costs one step per chunk, not per byte.
        while True:
            line_end = buf.find(b"\r\n", self.chunk_at)
            if line_end < 0:
                return self._hand_over(len(buf) - self.chunk_at > self.line_cap)
            size = bytes(buf[self.chunk_at : line_end]).split(b";", 1)[0].rstrip(b" \t")
            if not HEX.fullmatch(size):
                return self._hand_over(True)  # gunicorn's body reader refuses it
            size = int(size, 16)
            if size == 0:  # the last chunk, then trailer fields up to an empty line
                if len(buf) < line_end + 4:
                    return False
                if buf[line_end + 2 : line_end + 4] == b"\r\n":
                    self.end = line_end + 4
                    return True
                trailers_end = buf.find(b"\r\n\r\n", line_end + 2)
                if trailers_end < 0:
                    return self._hand_over(len(buf) - line_end > self.head_cap)
                self.end = trailers_end + 4
                return True
            next_chunk = line_end + 2 + size + 2
            if len(buf) < next_chunk:
                # Over the limit once its bytes are here: Django reads one byte past the limit from
                # them and answers 413. A body smaller than its framing (tiny chunks) has a cap too.
                arrived = self.decoded + min(len(buf) - line_end - 2, size)
                return self._hand_over(arrived > self.body_limit or len(buf) > 2 * self.body_limit + self.head_cap)
            self.decoded += size
            self.chunk_at = next_chunk
            if self.decoded > self.body_limit:
                return self._hand_over(True)

    def _hand_over(self, now: bool) -> bool:
        self.partial = now
        return now


def _field_values(head: bytes, name: bytes) -> list[bytes]:
    """The values of every `name` field in a lower-cased request head (`name` is b"\\nfield:")."""
    values = []
    at = head.find(name)
    while at >= 0:
        end = head.find(b"\r\n", at)
        values.append(head[at + len(name) : end if end >= 0 else len(head)].strip(b" \t"))
        at = head.find(name, at + len(name))
    return values


class BufferedRequest(Unreader):
    """The bytes the poller read, then end of input: a thread never waits for a client's bytes."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.buf.write(data)
        self.exhausted = False

    def chunk(self, size_hint: int | None = None) -> bytes:
        # Only a request handed over before its end (refused from what arrived) gets here.
        self.exhausted = True
        return b""


class PrereadConn(TConn):
    """A connection with the request being read into it, and its deadlines."""

    def __init__(self, cfg, sock, client, server) -> None:
        super().__init__(cfg, sock, client, server)
        self.data_ready = True  # gthread's own wait for the first byte in a thread is not needed
        self.buf = bytearray()
        self.scan: RequestScan | None = None
        self.whole = False  # the request is all in `buf` (or is to be refused from what is there)
        self.request_deadline = 0.0  # when the request being read must be whole
        self.deadline: float | None = None  # set while the poller holds it: reading a request, or closing
        self.sent_continue = False
        self.lingered = 0  # bytes discarded while closing


# What a thread returns for a request it found incomplete: the poller reads the rest.
READ_MORE = object()


class PrereadThreadWorker(ThreadWorker):
    """gthread, except that threads serve only whole requests: slow clients wait in the poller, not in a thread.

    gthread hands a connection to a thread at its first byte, and the thread then reads the head and
    the body with blocking reads and no deadline, so a few clients trickling or stalling their
    requests hold every thread. Here a thread makes one non-blocking read, which holds the whole
    request of almost every client, and serves it from memory; a request still incomplete goes back
    to the main thread's poller, which reads the rest without blocking under a total deadline
    (REQUEST_READ_TIMEOUT) and hands it to a thread once whole. The first read stays in the thread,
    as in gthread: made in the main thread, which every connection of the worker waits on, it
    measured fewer requests per second under load (docs/profiles/server.md).
    """

    @classmethod
    def check_config(cls, cfg, log) -> None:
        super().check_config(cfg, log)
        # The poller reads plain HTTP/1 bytes: TLS, HTTP/2 and PROXY headers are not what it can frame.
        if cfg.is_ssl or cfg.http2_cleartext != "off" or cfg.proxy_protocol != "off":
            raise RuntimeError(f"{cls.__name__} serves plain HTTP/1.x only (no TLS, HTTP/2 or PROXY protocol)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reading: deque[tuple[float, PrereadConn]] = deque()  # in deadline order, entries may be stale
        self.lingering: deque[tuple[float, PrereadConn]] = deque()
        cfg = self.cfg
        # gunicorn refuses a head larger than this (request line, then the header fields).
        self.head_cap = cfg.limit_request_line + 2 + cfg.limit_request_fields * (cfg.limit_request_field_size + 2) + 4
        self.body_limit = DEFAULT_BODY_LIMIT

    def load_wsgi(self) -> None:
        super().load_wsgi()
        try:
            from django.conf import settings
        except ImportError:
            return
        if settings.configured and settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None:
            self.body_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    # Main thread.

    def accept(self, listener) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = PrereadConn(self.cfg, client_sock, client_addr, listener.getsockname())
        self._start_request(conn, b"")
        # No thread until its first bytes (gthread would hold one for up to 5 s waiting for them).
        self._wait_in_poller(conn, self.on_client_socket_readable)

    def on_client_socket_readable(self, conn: PrereadConn, client) -> None:
        """The first bytes of a request: a thread reads them (gthread's own path, plus a deadline)."""
        self.poller.unregister(client)
        if conn.deadline is None:  # kept alive until now
            self.keepalived_conns.remove(conn)
            self._start_request(conn, b"")
        self._hand_over(conn)

    def on_request_readable(self, conn: PrereadConn, client) -> None:
        """More of a request a thread found incomplete: read here, so that no thread waits for it."""
        whole = self._receive(conn)
        if whole is None:
            self._close(conn)
        elif whole:
            self.poller.unregister(client)
            self._hand_over(conn)

    def _start_request(self, conn: PrereadConn, data: bytes) -> None:
        conn.buf = bytearray(data)
        conn.scan = RequestScan(self.head_cap, self.cfg.limit_request_field_size, self.body_limit)
        conn.whole = False
        conn.request_deadline = time.monotonic() + REQUEST_READ_TIMEOUT
        conn.sent_continue = False

    def _wait_in_poller(self, conn: PrereadConn, callback) -> None:
        conn.sock.setblocking(False)
        conn.deadline = conn.request_deadline
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(callback, conn))
        self.reading.append((conn.deadline, conn))

    def _hand_over(self, conn: PrereadConn) -> None:
        conn.deadline = None  # a thread has it: not the poller's to close
        self.enqueue_req(conn)

    def _close(self, conn: PrereadConn) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        conn.deadline = None
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Drop clients past their request deadline, and lingering closes past theirs."""
        now = time.monotonic()
        for queue in (self.reading, self.lingering):
            while queue and queue[0][0] <= now:
                deadline, conn = queue.popleft()
                if conn.deadline == deadline:  # still waiting in the poller for that request (or close)
                    if queue is self.reading:
                        self.log.debug("Closing %s: no whole request within %g s", conn.client, REQUEST_READ_TIMEOUT)
                    self._close(conn)

    def finish_request(self, conn: PrereadConn, fs) -> None:
        try:
            result = fs.result() if not fs.cancelled() else False
            if result is READ_MORE:
                if time.monotonic() >= conn.request_deadline:
                    self._close(conn)
                else:
                    self._wait_in_poller(conn, self.on_request_readable)
            elif result:
                # Bytes read past the request (a pipelined next one) start the next request.
                if read_ahead := conn.parser.unreader.take_buffered():
                    self._start_request(conn, read_ahead)
                    conn.whole = conn.scan.complete(conn.buf)
                    if conn.whole:
                        self._hand_over(conn)
                    else:
                        self._wait_in_poller(conn, self.on_request_readable)
                else:
                    conn.sock.setblocking(False)
                    conn.set_timeout()
                    self.keepalived_conns.append(conn)
                    self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))
            else:
                self._linger(conn)
        except Exception:
            self._close(conn)

    def _linger(self, conn: PrereadConn) -> None:
        """gunicorn's close_graceful() (FIN first, so the answer is not cut by a reset) without blocking."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.nr_conns -= 1
            util.close(conn.sock)
            return
        conn.sock.setblocking(False)
        conn.lingered = 0
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_lingering_readable, conn))
        self.lingering.append((conn.deadline, conn))

    def on_lingering_readable(self, conn: PrereadConn, client) -> None:
        try:
            data = client.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.lingered += len(data)
        if not data or conn.lingered > LINGER_MAX_BYTES:
            self._close(conn)

    # Both.

    def _receive(self, conn: PrereadConn) -> bool | None:
        """One non-blocking read: whether the request is whole now (None: the client has gone)."""
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return None
        if not data:
            return None
        conn.buf += data
        conn.whole = conn.scan.complete(conn.buf)
        if conn.whole:
            return True
        if conn.scan.expects_continue and not conn.sent_continue:
            conn.sent_continue = True
            with contextlib.suppress(OSError):
                conn.sock.send(CONTINUE)  # a few bytes into an idle socket's empty send buffer
        return False

    # Worker threads.

    def handle(self, conn: PrereadConn):
        if not conn.whole:  # its first bytes, or kept alive: gthread's first read, but without blocking
            whole = self._receive(conn)
            if whole is None:
                return False
            if not whole:
                return READ_MORE
        if conn.parser is None:
            conn.init()  # plain HTTP/1 (check_config): builds the parser, reads nothing
        conn.parser.unreader = BufferedRequest(bytes(conn.buf))
        conn.buf = bytearray()
        return super().handle(conn)

    def handle_request(self, req, conn: PrereadConn):
        if conn.scan.partial:
            req.force_close()  # the rest of it may still come: "Connection: close", then close
        if conn.sent_continue:
            req._expected_100_continue = False  # already sent by the poller
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn: PrereadConn, keepalive: bool) -> bool:
        # The body is in memory: gunicorn's drain under socket timeouts is not needed. Past the
        # buffered bytes nothing is known about where the next request starts, so that closes.
        return bool(keepalive and conn.parser.finish_body() and not conn.parser.unreader.exhausted)
