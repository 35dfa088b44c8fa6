"""gunicorn settings: the contract's bind address, workers from WEB_CONCURRENCY."""

from __future__ import annotations

import glob
import os
import sys
import tempfile

from web.access_log import ACCESS_LOG_FORMAT, json_logconfig


def _jwt_key_missing() -> str | None:
    """Why the settings would refuse JWT_KEY (as ticketing_orders.settings reads it), or None."""
    if os.environ.get("JWT_KEY"):
        return None
    if path := os.environ.get("JWT_KEY_FILE"):
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


# Checked as gunicorn loads this file, before it prints anything: otherwise every worker fails to
# load the settings with a traceback and the reason drowns in a hundred lines of them.
if _jwt_key_problem := _jwt_key_missing():
    sys.exit(_jwt_key_problem)

# The contract's address; `make run` passes GUNICORN_BIND=127.0.0.1:$PORT for a developer's machine.
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:3000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# The default worker is gthread with one change (common/gunicorn_worker.py): a thread serves only a
# request that is whole in memory. A thread makes gthread's first read, without blocking; a request
# still incomplete waits in the main thread's poller, which reads the rest under REQUEST_READ_TIMEOUT
# (default 10 s, then the connection is closed). Plain gthread hands a connection to a thread at its
# first byte and the thread then waits for the rest with no deadline: ten clients trickling or
# stalling their requests held all 2 x 4 threads and everyone else waited. Chosen by measurement
# (docs/profiles/server.md): with 50 such clients for 60 s the others' p99 was 58 ms, and CPU per
# request stayed gthread's (medians 0.89-1.07 of it on every route, SQLite and PostgreSQL). gevent
# also withstands slow clients, but cost up to 1.4x gthread's CPU per request on the database routes,
# needs a PostgreSQL pool (a connection per client connection otherwise), and its greenlets break
# Django's async views (the health probes). GUNICORN_WORKER_CLASS=gthread or gevent selects those.
# psycopg 3 cooperates with gevent's monkey-patching by itself; nothing here may import Django or
# psycopg, since the gevent worker patches only after this file is read.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "common.gunicorn_worker.PrereadThreadWorker")
# Workers x threads, measured (docs/profiles/server.md, "Workers and threads"): 1x8, 2x4, 2x8, 2x16,
# 3x4 and 4x2 on GET /api/orders/:id, SQLite and PostgreSQL, 2-4 rounds each. One worker per core (2)
# beat one worker by 1.4-2x in CPU per request; among the rest the round-to-round noise (up to 1.8x
# for one configuration) was larger than any difference, so the defaults stay 2 x 4.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))  # gthread and the default
# Open connections per worker: greenlets for gevent, connections the poller holds for the threaded ones.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))

# How long an idle kept-alive connection stays open; gevent reads each request's headers under it too.
keepalive = 2
timeout = 30
graceful_timeout = 20
accesslog = "-"
# No runtime control socket (gunicorn 27 would create one in $HOME): nothing here uses it.
control_socket_disable = True

# Prometheus metrics of every worker process: each writes its samples to files in
# PROMETHEUS_MULTIPROC_DIR, and /metrics (django-prometheus) adds them up. A fresh directory per
# start, unless one is given (its old samples are cleared: they belong to processes long gone).
if _metrics_dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_metrics_dir, exist_ok=True)
    for _stale in glob.glob(os.path.join(_metrics_dir, "*.db")):
        os.remove(_stale)
else:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="orders-metrics-")


def child_exit(server, worker) -> None:
    """A worker process is gone: its live gauges stop counting (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

# Access lines carry the request id; with LOG_FORMAT=json gunicorn's own lines are JSON too.
access_log_format = ACCESS_LOG_FORMAT
if os.environ.get("LOG_FORMAT") == "json":
    logconfig_dict = json_logconfig(os.environ.get("LOG_LEVEL", "INFO"))
