"""Fixtures of the HTTP plumbing's tests."""

from __future__ import annotations

import os
import secrets

import pytest


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    """What a deployment sets: JWT_KEY, a long random SECRET_KEY, ALLOWED_HOSTS; DEBUG unset.

    Built from scratch rather than copied: the test process has the test settings' variables.
    """
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "ticketing_orders.settings",
        "DATA_DIR": str(tmp_path / "data"),
        "JWT_KEY": secrets.token_urlsafe(32),
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "ticketing.dev,orders-srv",
    }
