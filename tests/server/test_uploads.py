"""50 clients streaming 50 MB chunked bodies at once: each refused with 413, the server's memory bounded."""

from __future__ import annotations

import os
import select
import socket
import threading
import time

from tests.server.support import TOO_LARGE, Server
from testsupport.processes import process_tree_rss

CLIENTS = int(os.environ.get("UPLOAD_CLIENTS", "50"))
BODY_BYTES = 50 * 1024 * 1024
FRAME = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"  # 64 KiB chunks


def upload(server: Server, answers: list[tuple[bytes, int, bool]]) -> None:
    """Stream a chunked body until the server answers (and closes), reading as we go.

    Records (what was read, bytes sent, whether the connection ended in a reset).
    """
    sent, response, reset = 0, b"", False
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(server.post_head())
        sock.setblocking(False)
        pending = FRAME
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < BODY_BYTES else [], [], 1)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    # The server closed with our body unread (granian does no lingering close): the
                    # reset can overtake its 413 (or the rest of it) on the way, and the kernel then
                    # drops what had not been read yet.
                    reset = True
                    break
                except OSError:
                    break
                if not data:
                    break
                response += data
            if writable:
                try:
                    count = sock.send(pending)
                except (ConnectionResetError, BrokenPipeError):  # the reset seen by a write
                    reset = True
                    break
                except OSError:
                    break
                sent += count
                pending = pending[count:] or FRAME
    answers.append((response, sent, reset))


def test_fifty_concurrent_50_mb_chunked_uploads_are_refused_with_bounded_memory(tmp_path):
    with Server(tmp_path, LOG_LEVEL="WARNING").running() as server:
        baseline = process_tree_rss(server.process.pid)
        answers: list[tuple[bytes, int, bool]] = []
        clients = [threading.Thread(target=upload, args=(server, answers)) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        peak = baseline
        while any(client.is_alive() for client in clients):
            peak = max(peak, process_tree_rss(server.process.pid))
            time.sleep(0.05)
        for client in clients:
            client.join(timeout=10)
        after = process_tree_rss(server.process.pid)

    # Every upload refused before its end: the JSON 413, or the reset of a server that stopped reading
    # (docs/profiles/server.md); never an answer of another kind, a hang, or a whole body taken in.
    # A reset may come before the answer, after it, or cut it mid-way: every answer read whole is the
    # JSON 413; what a reset let through of one is the start of a 413, never of another answer.
    whole = [response for response, _, _ in answers if response.endswith(TOO_LARGE)]
    cut = [response for response, _, _ in answers if not response.endswith(TOO_LARGE)]
    assert len(answers) == CLIENTS
    assert all(reset for response, _, reset in answers if not response.endswith(TOO_LARGE))
    assert [response.split(b" ", 2)[1] for response in whole] == [b"413"] * len(whole)
    assert all(b"HTTP/1.1 413 ".startswith(part[:13]) for part in cut)
    sent = sorted(count for _, count, _ in answers)
    assert sent[-1] < BODY_BYTES
    print(
        f"{CLIENTS} uploads of {BODY_BYTES >> 20} MB: RSS {baseline >> 20} MB before, peak {peak >> 20} MB "
        f"(+{(peak - baseline) >> 20} MB), {after >> 20} MB after; each client sent "
        f"{sent[0] >> 20}-{sent[-1] >> 20} MB before the server closed; {len(whole)} read the 413, {len(cut)} a reset first"
    )
    # Bounded: a few MB per upload in flight (at most DATA_UPLOAD_MAX_MEMORY_SIZE + 1 read, plus the
    # server's buffers), far below the bodies' 50 MB each; a bound, not a measurement.
    assert peak - baseline < 6 * CLIENTS * 1024 * 1024
