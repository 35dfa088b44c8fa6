"""The service's own processes for a test or a benchmark: its environment, `migrate`, the API server as
shipped (granian through ticketing_orders.server, or gunicorn with gunicorn.conf.py) and the worker."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from testsupport.processes import REPO, Child, Processes, free_port
from testsupport.waiting import wait_until

# What the shell (or make) exports for a developer's own service stays out of the service under test:
# it runs as its files configure it, pointed at the test's resources.
SHELL_ONLY = ("GRANIAN_", "GUNICORN_", "PROMETHEUS_", "DJANGO_", "DATABASE_", "NATS_", "OTEL_")
SHELL_ONLY_NAMES = ("WEB_CONCURRENCY", "PORT", "LOG_FORMAT", "LOG_LEVEL")

# Quick redelivery: fault scenarios wait for what a fault held back, not for production's backoff.
QUICK_REDELIVERY = {
    "EVENT_RETRY_BASE_SECONDS": "0.1",
    "EVENT_RETRY_MAX_SECONDS": "1",
    "EVENT_ACK_WAIT_SECONDS": "5",
}


def service_env(
    *,
    database_url: str,
    data_dir: Path,
    jwt_key: str,
    secret_key: str,
    nats_url: str = "nats://127.0.0.1:9",
    **extra: str,
) -> dict[str, str]:
    """The environment a deployment gives the service (production settings), pointed at the test's database,
    NATS and data folder, with the test's JWT key so its cookies are accepted. `extra` goes on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SHELL_ONLY) and k not in SHELL_ONLY_NAMES}
    env.update(
        DJANGO_SETTINGS_MODULE="ticketing_orders.settings",
        JWT_KEY=jwt_key,
        SECRET_KEY=secret_key,
        DATABASE_URL=database_url,
        NATS_URL=nats_url,
        DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def migrate(env: dict[str, str], *, cwd: Path = REPO, timeout: float = 300) -> None:
    """`manage.py migrate` in a subprocess, as a deployment's init step runs it."""
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode:
        raise RuntimeError(f"migrate failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")


@dataclass
class Api:
    """A running API server: its process (the server's main process, its workers below it) and address."""

    child: Child
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def api_command(server: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start `server` ("granian" or "gunicorn") on loopback `port`."""
    if server == "gunicorn":
        args = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "ticketing_orders.wsgi"]
        return args, {"GUNICORN_BIND": f"127.0.0.1:{port}"}
    if server == "granian":
        return [sys.executable, "-m", "ticketing_orders.server"], {
            "GRANIAN_HOST": "127.0.0.1",
            "GRANIAN_PORT": str(port),
        }
    raise ValueError(f"no such API server: {server!r}")


def start_api(
    processes: Processes,
    name: str,
    env: dict[str, str],
    *,
    server: str = "granian",
    workers: int = 2,
    ready_path: str = "/healthz",
    timeout: float = 90,
) -> Api:
    """The API server as shipped on a free loopback port, waited for until `ready_path` answers 200."""
    port = free_port()
    args, server_env = api_command(server, port)
    child = processes.start(name, args, env={**env, **server_env, "WEB_CONCURRENCY": str(workers)})
    api = Api(child, port)

    def ready() -> bool:
        child.check_alive()
        with contextlib.suppress(OSError), urllib.request.urlopen(api.url + ready_path, timeout=2) as answer:  # noqa: S310 (http on loopback)
            return answer.status == 200
        return False

    wait_until(ready, timeout=timeout, message=f"{name} ({server}) to answer {ready_path}", every=0.1)
    return api


def start_worker(processes: Processes, name: str, env: dict[str, str], *, wait: bool = True) -> Child:
    """`python manage.py run_listeners` with its metrics on a free port (`child.metrics_port`); with `wait`,
    waited for until its consumers listen."""
    metrics_port = free_port()
    child = processes.start(
        name, [sys.executable, "manage.py", "run_listeners"], env={**env, "WORKER_METRICS_PORT": str(metrics_port)}
    )
    child.metrics_port = metrics_port
    if wait:

        def listening() -> bool:
            child.check_alive()
            return "listening on" in child.log()

        wait_until(listening, timeout=60, message=f"{name} to listen", every=0.05)
    return child
