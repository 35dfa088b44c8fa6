"""`python -m ticketing_orders.server` without JWT_KEY prints the settings' one sentence and exits before granian starts."""

from __future__ import annotations

import os
import subprocess
import sys

from testsupport.processes import REPO
from ticketing_orders.server import DEFAULTS, granian_environment


def launch(env: dict[str, str]) -> tuple[int, list[str]]:
    result = subprocess.run(
        [sys.executable, "-m", "ticketing_orders.server"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=60,
    )
    return result.returncode, result.stdout.decode(errors="replace").splitlines()


def test_without_jwt_key_only_the_reason_is_printed(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("JWT_KEY", "JWT_KEY_FILE")}
    env["DATA_DIR"] = str(tmp_path)

    returncode, lines = launch(env)

    assert returncode == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith("ImproperlyConfigured: JWT_KEY is not set: "), lines[0]


def test_the_environment_overrides_every_default():
    environ = {"WEB_CONCURRENCY": "3", "GRANIAN_PORT": "8123", "GRANIAN_BLOCKING_THREADS": "8", "LOG_LEVEL": "DEBUG"}

    granian_environment(environ)

    assert environ["GRANIAN_PORT"] == "8123"
    assert (environ["GRANIAN_WORKERS"], environ["GRANIAN_BLOCKING_THREADS"], environ["GRANIAN_BACKPRESSURE"]) == (
        "3",
        "8",
        "128",
    )
    assert (environ["GRANIAN_LOG_LEVEL"], environ["GRANIAN_INTERFACE"]) == ("debug", "wsgi")
    assert environ["GRANIAN_HOST"] == DEFAULTS["GRANIAN_HOST"] == "0.0.0.0"  # noqa: S104 (the contract's)
    assert "GRANIAN_LOG_CONFIG" not in environ  # plain logs: granian's own format
