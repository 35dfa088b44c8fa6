"""The probes: /healthz answers while the process runs, /readyz only while the database answers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connections
from django.test import RequestFactory
from health_check.checks import Database

from web.views import ProbeView

BASE_DIR = Path(settings.BASE_DIR)
DATABASE_CHECK = "Database(alias='default')"


def test_liveness_is_200_json_without_touching_the_database(client):
    # No django_db mark: any query would fail the test.
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "checks": {}}


def test_liveness_ignores_cookies_and_is_never_cached(client):
    client.cookies["session"] = "not-base64-%%%"
    response = client.get("/healthz")

    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readiness_is_200_when_the_database_answers(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {DATABASE_CHECK: "OK"}}


@pytest.fixture
def unreachable_alias(tmp_path):
    """A second database alias whose SQLite file sits in a directory that does not exist."""
    alias = "unreachable"
    configured = connections.configure_settings(
        {
            "default": dict(connections.settings["default"]),
            alias: {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "missing-dir" / "db.sqlite3")},
        }
    )
    connections.settings[alias] = configured[alias]
    yield alias
    del connections.settings[alias]


def test_the_readiness_view_is_503_when_its_database_cannot_be_opened(unreachable_alias, django_db_blocker):
    # The same view class as /readyz, checking the broken alias: a real failed connection.
    view = ProbeView.as_view(checks=((Database, {"alias": unreachable_alias}),))

    # Unblocked without a test database: nothing but the broken alias is touched.
    with django_db_blocker.unblock():
        response = async_to_sync(view)(RequestFactory().get("/readyz"))

    assert response.status_code == 503
    assert json.loads(response.content) == {
        "status": "unavailable",
        "checks": {f"Database(alias='{unreachable_alias}')": "Unavailable: unable to open database file"},
    }


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_readyz_is_503_and_healthz_200_when_postgresql_is_unreachable(production_env):
    """The real routes, in a process configured with a PostgreSQL URL on a port where nothing listens."""
    script = (
        "import json, django\n"
        "django.setup()\n"
        "from django.test import Client\n"
        "client = Client()\n"
        "for path in ('/healthz', '/readyz'):\n"
        "    response = client.get(path)\n"
        "    print(json.dumps([path, response.status_code, response['Content-Type'], response.json()]))\n"
    )
    env = {
        **production_env,
        "ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": f"postgres://orders@127.0.0.1:{_closed_port()}/orders",
    }

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    (healthz, readyz) = [json.loads(line) for line in result.stdout.splitlines()]
    assert healthz == ["/healthz", 200, "application/json", {"status": "ok", "checks": {}}]
    path, status, content_type, body = readyz
    assert (path, status, content_type) == ("/readyz", 503, "application/json")
    assert body["status"] == "unavailable"
    assert list(body["checks"]) == [DATABASE_CHECK]
    assert body["checks"][DATABASE_CHECK].startswith("Unavailable: connection failed"), body
