"""Settings for the test suite: the production settings with a known JWT key and fast retries."""

import os

os.environ.setdefault("JWT_KEY", "test-jwt-key-not-secret-0123456789abcdef")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-used-outside-tests-0123456789abcdef")
os.environ.setdefault("EVENT_RETRY_BASE_SECONDS", "0.05")
os.environ.setdefault("EVENT_RETRY_MAX_SECONDS", "0.5")
os.environ.setdefault("EVENT_ACK_WAIT_SECONDS", "5")
# Workers started by tests (several at once) serve their metrics on free ports, never on 9102.
os.environ.setdefault("WORKER_METRICS_PORT", "0")

from ticketing_orders.settings import *  # noqa: F403

STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405 (django-prometheus wraps the engine)
    # One test database per run: two runs in the same checkout must not delete each other's, and a
    # later run that gets the same pid must not meet a -wal file left behind (conftest.py removes them).
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-orders-{os.getpid()}-{os.urandom(4).hex()}.sqlite3")}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
