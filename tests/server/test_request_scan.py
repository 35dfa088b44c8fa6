"""Where the default gunicorn worker's poller decides a request is whole (or must be handed over as it is)."""

from __future__ import annotations

import pytest

from common.gunicorn_worker import RequestScan

LIMIT = 1000
HEAD_CAP = 4096


def scan_in_pieces(data: bytes, step: int) -> tuple[int | None, RequestScan]:
    """Feed `data` `step` bytes at a time; the length at which the scan first answers True, or None."""
    scan = RequestScan(HEAD_CAP, 100, LIMIT)
    buf = bytearray()
    for at in range(0, len(data), step):
        buf += data[at : at + step]
        if scan.complete(buf):
            return len(buf), scan
    return None, scan


def post(framing: str, extra: str = "") -> bytes:
    return f"POST /api/orders HTTP/1.1\r\nHost: localhost\r\n{framing}\r\n{extra}\r\n".encode()


def chunked(body: bytes, size: int) -> bytes:
    pieces = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(pieces) + b"0\r\n\r\n"


GET = b"GET /api/orders HTTP/1.1\r\nHost: localhost\r\nCookie: session=abc\r\n\r\n"
BODY = b'{"ticketId": "65f0c0ffee0000000000abcd"}'


@pytest.mark.parametrize(
    "request_bytes",
    [
        GET,
        post(f"Content-Length: {len(BODY)}") + BODY,
        post("Content-length:  0"),
        post("Transfer-Encoding: chunked") + chunked(BODY, 1),
        post("Transfer-Encoding: chunked") + chunked(BODY, 16),
        post("transfer-encoding: gzip, chunked") + chunked(BODY, 7),
        post("Transfer-Encoding: chunked") + chunked(BODY, 5)[:-2] + b"X-Checksum: 1\r\n\r\n",  # a trailer
        post("Transfer-Encoding: chunked") + b"5;name=value\r\n" + BODY[:5] + b"\r\n0\r\n\r\n",  # an extension
    ],
)
@pytest.mark.parametrize("step", [1, 3, 64, 100_000])
def test_a_request_is_whole_at_its_last_byte_and_not_before(request_bytes, step):
    end, scan = scan_in_pieces(request_bytes + GET, step)  # a pipelined request behind it changes nothing
    piece_with_last_byte = -(-len(request_bytes) // step) * step
    assert (end, scan.end, scan.partial) == (
        min(piece_with_last_byte, len(request_bytes + GET)),
        len(request_bytes),
        False,
    )


@pytest.mark.parametrize(
    "request_bytes",
    [
        post(f"Content-Length: {LIMIT + 1}"),  # Django answers 413 from the headers
        post("Content-Length: 5\r\nContent-Length: 5") + b"abcde",
        post("Content-Length: -5"),
        post("Content-Length: 5\r\nTransfer-Encoding: chunked") + b"abcde",
        post("Transfer-Encoding: gzip") + b"abc",
        post("Transfer-Encoding: chunked") + b"zz\r\nab\r\n",
        post("Transfer-Encoding: chunked") + b"1" * 200,  # a chunk-size line longer than gunicorn takes
        b"GET /" + b"a" * HEAD_CAP,  # a head longer than gunicorn takes
    ],
)
def test_what_the_server_refuses_anyway_is_handed_over_at_once(request_bytes):
    end, scan = scan_in_pieces(request_bytes, 100_000)
    assert (end, scan.partial) == (len(request_bytes), True)


def test_a_chunked_body_over_the_limit_is_handed_over_once_past_it():
    head = post("Transfer-Encoding: chunked")
    end, scan = scan_in_pieces(head + chunked(b"x" * (LIMIT + 50), 300), 1)
    # Chunks of 300, 300, 300, 150: Django reads LIMIT + 1 bytes, the 101st of the last chunk, then answers 413.
    assert (end, scan.partial) == (len(head) + 3 * len(b"12c\r\n" + b"x" * 300 + b"\r\n") + len(b"96\r\n") + 101, True)


def test_a_client_waiting_for_100_continue_is_told_to_send_its_body():
    end, scan = scan_in_pieces(post(f"Content-Length: {len(BODY)}", "Expect: 100-continue\r\n"), 100_000)
    assert (end, scan.expects_continue) == (None, True)
    http10 = post(f"Content-Length: {len(BODY)}", "Expect: 100-continue\r\n").replace(b"HTTP/1.1", b"HTTP/1.0")
    assert scan_in_pieces(http10, 100_000)[1].expects_continue is False
