"""Operators' view of the API: Prometheus metrics at /metrics, a request id in responses and log lines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testsupport.http import metric

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]


def test_metrics_count_requests_by_route_and_status(client, signed_in, make_ticket):
    before = client.get("/metrics").content.decode()
    ticket = make_ticket()
    signed_in.post("/api/orders", {"ticketId": ticket.id}, format="json")
    signed_in.post("/api/orders", {"ticketId": ticket.id}, format="json")  # 400: already reserved
    client.get("/api/orders")  # 401

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    name = "django_http_responses_total_by_status_view_method_total"
    for status, method, count in (("201", "POST", 1), ("400", "POST", 1), ("401", "GET", 1)):
        labels = {"status": status, "view": "orders", "method": method}
        assert metric(text, name, **labels) - metric(before, name, **labels) == count, (status, method)
    # Latency histograms by route, and the database's own counters.
    assert metric(text, "django_http_requests_latency_seconds_by_view_method_count", view="orders", method="POST") >= 2
    assert metric(text, "django_db_execute_total", alias="default") > 0


def test_the_request_id_is_taken_from_x_request_id_or_generated(client):
    given = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert client.get("/healthz", HTTP_X_REQUEST_ID=given)["X-Request-ID"] == given

    generated = client.get("/healthz")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert client.get("/healthz")["X-Request-ID"] != generated

    # Anything that is not a UUID (log injection, huge values) is replaced, never echoed.
    for bad in ("abc\ninjected", "x" * 5000, "not-a-uuid"):
        answered = client.get("/healthz", HTTP_X_REQUEST_ID=bad)["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", answered), bad


JSON_LOG_PROBE = """
import json, django
django.setup()
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
call_command("migrate", verbosity=0)
from tickets_replica.models import Ticket
from web.management.commands.mint_token import session_cookie_value
Ticket.objects.create(id="65f0c0ffee0000000000abcd", title="concert", price=20, version=0)
cookie = "session=" + session_cookie_value(user_id="65f0c0ffee00000000000001", email="a@b.c")
response = Client(HTTP_COOKIE=cookie).post(
    "/api/orders", {"ticketId": "65f0c0ffee0000000000abcd"}, content_type="application/json",
    HTTP_X_REQUEST_ID="6f1c2a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
)
print("RESULT " + json.dumps({"status": response.status_code, "request_id": response["X-Request-ID"]}))
"""


def test_json_logs_carry_the_request_id_on_every_line_of_the_request(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ticketing_orders.settings_test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    done = subprocess.run(
        [sys.executable, "-c", JSON_LOG_PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result == {"status": 201, "request_id": "6f1c2a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"}

    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    created = [line for line in lines if line["message"].startswith("order created")]
    assert len(created) == 1, done.stderr
    assert created[0]["request_id"] == result["request_id"]
    assert {"time", "level", "logger", "message", "request_id"} <= set(created[0])
    # Outside a request (start-up, migrations) the id is "-".
    assert all(line["request_id"] in ("-", result["request_id"]) for line in lines)


def test_log_format_must_be_plain_or_json():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ticketing_orders.settings_test", "LOG_FORMAT": "xml"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "LOG_FORMAT must be plain or json, got 'xml'" in done.stderr


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", ""])
def test_a_content_length_that_is_not_a_number_is_counted_not_crashed_on(signed_in, length):
    response = signed_in.generic("POST", "/api/orders", b"{}", content_type="application/json", CONTENT_LENGTH=length)
    assert response.status_code < 500
    assert response.json()["errors"]
