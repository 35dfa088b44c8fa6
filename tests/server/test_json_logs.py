"""Access lines carry the request id, plain or LOG_FORMAT=json; under json every line of the server's output is JSON."""

from __future__ import annotations

import json

import pytest
import requests

from tests.server.support import Server

REQUEST_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.mark.parametrize("kind", ["granian", "gunicorn"])
def test_every_line_is_json_and_the_request_id_is_on_the_requests_lines(tmp_path, kind):
    server = Server(tmp_path, kind, LOG_FORMAT="json", LOG_LEVEL="INFO")
    with server.running():
        response = requests.get(f"{server.base}/api/orders", headers={"X-Request-ID": REQUEST_ID}, timeout=30)
        assert (response.status_code, response.headers["X-Request-ID"]) == (401, REQUEST_ID)
        generated = requests.get(f"{server.base}/api/orders", timeout=30).headers["X-Request-ID"]

    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    mine = [line for line in lines if line["request_id"] == REQUEST_ID]
    assert {line["logger"] for line in mine} == {"web.authentication", "orders.access"}, mine
    access = next(line for line in mine if line["logger"] == "orders.access")
    assert '"GET /api/orders HTTP/1.1" 401' in access["message"]
    # An id the server made up is on its access line too.
    assert [line["logger"] for line in lines if line["request_id"] == generated] == [
        "web.authentication",
        "orders.access",
    ]
    assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    # The server's own lines: JSON as well.
    assert any(line["message"].startswith("Listening at") for line in lines), lines[:5]


def test_plain_access_lines_carry_the_request_id(tmp_path):
    server = Server(tmp_path, LOG_LEVEL="INFO")
    with server.running():
        requests.get(f"{server.base}/healthz", headers={"X-Request-ID": REQUEST_ID}, timeout=30)
    (line,) = [line for line in server.log().splitlines() if "orders.access" in line and REQUEST_ID in line]
    assert f"INFO orders.access [{REQUEST_ID}] 127.0.0.1 " in line
    assert '"GET /healthz HTTP/1.1" 200 ' in line
