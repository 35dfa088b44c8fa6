"""The admin is safe to expose: throttled logins (django-axes), and ADMIN_ENABLED=false removes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/api/orders/admin/login/"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="op", password="right-password-1", is_staff=True)


def login(client: Client, password: str):
    return client.post(LOGIN, {"username": "op", "password": password, "next": "/api/orders/admin/"})


def test_a_right_password_signs_in(staff):
    client = Client()
    response = login(client, "right-password-1")
    assert response.status_code == 302
    assert client.get("/api/orders/admin/").status_code == 200


def test_repeated_failed_logins_lock_the_username_out(staff, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = login(client, "wrong")
        assert response.status_code == 200  # the form again, with its error
        assert b"Please enter the correct username and password" in response.content

    locked = login(client, "wrong")
    assert locked.status_code == 429
    assert locked.json() == {"errors": [{"message": "Too many failed login attempts: try again in 15 minutes"}]}
    assert locked["Retry-After"] == "900"

    # Locked: even the right password is refused now, from any client.
    again = login(Client(), "right-password-1")
    assert again.status_code == 429
    assert Client().get("/api/orders/admin/").status_code == 302  # not signed in


def test_failures_below_the_limit_are_forgotten_after_a_success(staff, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "wrong")
    assert login(client, "right-password-1").status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(Client(), "wrong").status_code == 200


def run_with_env(code: str, **env: str) -> dict:
    """Run `code` in a fresh interpreter with these settings in the environment; it prints JSON."""
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ticketing_orders.settings_test",
        "DATABASE_URL": "sqlite:///:memory:",
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=environ, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


PROBE = """
import json, django
django.setup()
from django.apps import apps
from django.conf import settings
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
from django.urls import NoReverseMatch, reverse
from web.management.commands.mint_token import session_cookie_value
cookie = "session=" + session_cookie_value(user_id="65f0c0ffee00000000000001", email="a@b.c")
response = Client(HTTP_COOKIE=cookie).get("/api/orders/admin/")
try:
    reverse("admin:index")
    routed = True
except NoReverseMatch:
    routed = False
print(json.dumps({
    "status": response.status_code,
    "body": response.content.decode(),
    "admin_routed": routed,
    "admin_installed": apps.is_installed("django.contrib.admin"),
    "axes_installed": apps.is_installed("axes"),
}))
"""


def test_admin_enabled_false_removes_the_admin_entirely():
    seen = run_with_env(PROBE, ADMIN_ENABLED="false")
    # /api/orders/admin/ is then just a malformed order id.
    assert seen == {
        "status": 404,
        "body": '{"errors":[{"message":"Not Found"}]}',
        "admin_routed": False,
        "admin_installed": False,
        "axes_installed": False,
    }


def test_the_admin_is_there_by_default():
    seen = run_with_env(PROBE)
    assert (seen["status"], seen["admin_routed"], seen["admin_installed"], seen["axes_installed"]) == (
        302,
        True,
        True,
        True,
    )


def test_failures_from_one_address_lock_that_address_whatever_the_usernames(staff, settings):
    attacker = Client(HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.7")  # the ingress appended the last one
    for n in range(settings.AXES_FAILURE_LIMIT):
        response = attacker.post(LOGIN, {"username": f"guess{n}", "password": "x"})
    assert response.status_code == 429

    # That address is locked, even for the right credentials; another address signs in.
    assert login(Client(HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7"), "right-password-1").status_code == 429
    assert login(Client(HTTP_X_FORWARDED_FOR="203.0.113.8"), "right-password-1").status_code == 302
