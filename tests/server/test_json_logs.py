"""LOG_FORMAT=json under gunicorn: every line of its output is JSON, and a request's lines share its id."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import requests

from tests.server.test_slow_clients import REPO, Server

REQUEST_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def test_every_line_is_json_and_the_request_id_is_on_the_requests_lines(tmp_path):
    server = Server(tmp_path, LOG_FORMAT="json", LOG_LEVEL="INFO")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=server.env, check=True)
    log_path = tmp_path / "out.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "ticketing_orders.wsgi"],
            cwd=REPO,
            env=server.env,
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"{server.base}/api/orders", headers={"X-Request-ID": REQUEST_ID}, timeout=30)
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        assert response.status_code == 401
        assert response.headers["X-Request-ID"] == REQUEST_ID
    finally:
        process.terminate()
        process.wait(timeout=30)

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    mine = [line for line in lines if line["request_id"] == REQUEST_ID]
    assert {line["logger"] for line in mine} == {"web.authentication", "gunicorn.access"}, mine
    access = next(line for line in mine if line["logger"] == "gunicorn.access")
    assert '"GET /api/orders HTTP/1.1" 401' in access["message"]
    assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    assert any(line["message"].startswith("Listening at") for line in lines)
