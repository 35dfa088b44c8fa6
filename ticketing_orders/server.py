"""`python -m ticketing_orders.server`: granian serving ticketing_orders.wsgi with the service's defaults, after its checks."""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
from collections.abc import MutableMapping

from web.access_log import json_logconfig

APPLICATION = "ticketing_orders.wsgi:application"

# Everything granian itself can express stays granian's: each default below is a GRANIAN_* variable
# set only when the environment has not set it, then this process runs granian's own command line
# (arguments are passed on to it), so its options, signals, workers and exit status are granian's.
# What granian cannot express is done here first: refusing to start without JWT_KEY in one sentence,
# a fresh Prometheus multiprocess directory, and JSON lines for granian's own messages under
# LOG_FORMAT=json. Nothing here imports Django.

# Chosen by measurement (docs/profiles/server.md, "granian: workers and threads"), both databases.
DEFAULTS = {
    "GRANIAN_INTERFACE": "wsgi",
    # The contract's address in the container; `make run` sets GRANIAN_HOST=127.0.0.1, GRANIAN_PORT=$PORT.
    "GRANIAN_HOST": "0.0.0.0",  # noqa: S104 (the container's port 3000, behind the Service)
    "GRANIAN_PORT": "3000",
    # TLS ends at the ingress and it speaks HTTP/1.1 to the pods: no h2c upgrade path to maintain.
    "GRANIAN_HTTP": "1",
    "GRANIAN_WEBSOCKETS": "false",
    # One runtime thread per worker: the Rust side only frames HTTP; a second one bought nothing
    # measurable and costs a thread switch per request.
    "GRANIAN_RUNTIME_THREADS": "1",
    # A connection that has not sent its whole head within 10 s is closed (REQUEST_READ_TIMEOUT's
    # old default). Granian has no deadline for a body (its issue #728): behind the ingress, nginx
    # buffers every body under its own client_body_timeout before the pod sees a byte of it.
    "GRANIAN_HTTP1_HEADER_READ_TIMEOUT": "10000",
    # SIGTERM: workers stop accepting, finish what is in flight, and are killed after this long
    # (the pod's grace period leaves room for it after the preStop sleep).
    "GRANIAN_WORKERS_KILL_TIMEOUT": "20",
    # A worker that dies is replaced, as gunicorn's arbiter does.
    "GRANIAN_RESPAWN_FAILED_WORKERS": "true",
}
# Per worker: blocking threads serve the requests. A request whose body is still arriving
# holds its thread (parked in Rust, GIL released) until the body is whole, so the pool is sized for
# trickling clients rather than for CPU: granian starts threads only while requests queue and stops
# them after 30 s idle. Measured (docs/profiles/server.md, wrk -t2 -c32, two rounds each, on a
# machine loaded 11-17 on 2 cores): on PostgreSQL 4 threads cost the most CPU per request and served
# the fewest requests in both rounds, 16 and 64 were alike; on SQLite the rounds moved more than the
# configurations differed; 2 runtime threads bought nothing. 32 leaves room for 30 trickling bodies
# beside the normal load. Of these threads, at most API_REQUEST_SLOTS (4) a worker run Django at once,
# once their bodies are in (web/handlers.py): 32 threads all running Python cost up to twice the CPU
# per request in GIL contention (docs/profiles/server.md, "Request slots"), and on SQLite a burst of
# 64 writers queued on its one write lock, whose waiters are not served in turn, until 10 of them
# waited past the 30 s lock timeout (503) in `make bench`'s flash sale.
BLOCKING_THREADS = "32"
# Connections a worker holds at once, idle kept-alive ones included (granian takes a permit per
# connection): well above the threads, so an upstream's pool of kept-alive connections never keeps a
# new one waiting in the backlog, and low enough that each one's read buffer (up to 400 KiB) and the
# bodies in flight (32 x 2.5 MiB) stay inside the pod's 512 Mi with both workers full.
BACKPRESSURE = "128"


def jwt_key_problem(environ: MutableMapping[str, str]) -> str | None:
    """Why the settings would refuse JWT_KEY (as ticketing_orders.settings reads it), or None."""
    if environ.get("JWT_KEY"):
        return None
    if path := environ.get("JWT_KEY_FILE"):
        try:
            with open(path) as key_file:
                if key_file.read().strip():
                    return None
        except OSError as exc:
            return f"ImproperlyConfigured: JWT_KEY_FILE cannot be read: {exc}"
    return (
        "ImproperlyConfigured: JWT_KEY is not set: the orders service cannot verify session tokens without the "
        "HMAC key shared with the auth service. Set JWT_KEY (or JWT_KEY_FILE) and start again."
    )


def fresh_metrics_dir(environ: MutableMapping[str, str]) -> str:
    """PROMETHEUS_MULTIPROC_DIR for this start: given and emptied, or a new one.

    Every worker process writes its samples there and /metrics adds them up. Samples left by an
    earlier start belong to processes long gone. A worker that dies while this one runs leaves its
    file, and its counts stay in the sums (they happened); the API exports no gauges (the only ones
    django-prometheus has, of migrations, are off), so nothing of a dead worker's goes stale.
    """
    if path := environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="orders-metrics-")
        environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def granian_environment(environ: MutableMapping[str, str]) -> None:
    """The service's defaults under whatever GRANIAN_* the environment already sets."""
    for name, value in DEFAULTS.items():
        environ.setdefault(name, value)
    environ.setdefault("GRANIAN_WORKERS", environ.get("WEB_CONCURRENCY", "2"))
    environ.setdefault("GRANIAN_BLOCKING_THREADS", BLOCKING_THREADS)
    environ.setdefault("GRANIAN_BACKPRESSURE", BACKPRESSURE)
    environ.setdefault("GRANIAN_LOG_LEVEL", environ.get("LOG_LEVEL", "INFO").lower())
    if environ.get("LOG_FORMAT") == "json" and "GRANIAN_LOG_CONFIG" not in environ:
        config = json_logconfig(environ.get("LOG_LEVEL", "INFO"), server_loggers=("_granian", "granian.access"))
        with tempfile.NamedTemporaryFile("w", prefix="orders-granian-log-", suffix=".json", delete=False) as file:
            json.dump(config, file)
        environ["GRANIAN_LOG_CONFIG"] = file.name


def main(argv: list[str]) -> None:
    if problem := jwt_key_problem(os.environ):
        # Before granian starts: otherwise every worker fails to load the settings with a traceback.
        sys.exit(problem)
    fresh_metrics_dir(os.environ)
    granian_environment(os.environ)
    from granian.cli import cli

    # granian's own command line, in this process: its options, its GRANIAN_* variables, its signals.
    cli([*argv, APPLICATION], prog_name="granian", auto_envvar_prefix="GRANIAN")


if __name__ == "__main__":
    main(sys.argv[1:])
