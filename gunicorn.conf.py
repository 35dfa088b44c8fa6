"""gunicorn settings: the contract's bind address, workers from WEB_CONCURRENCY."""

from __future__ import annotations

import os
import sys


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

# gthread (the default) hands a connection to one of `threads` threads as soon as its first byte
# arrives, and that thread then blocks until the request is complete: clients that trickle their
# headers or body pin all 2 x 4 threads and everyone else waits (docs/profiles/server.md).
# GUNICORN_WORKER_CLASS=gevent serves every connection in a greenlet instead, so slow clients hold
# a few kB each and the others' p99 stays in milliseconds; it is not the default yet because
# Django runs async views (the health probes) in an event loop that gevent's greenlets share, and
# concurrent ORM calls in the same worker then fail with SynchronousOnlyOperation.
# psycopg 3 cooperates with gevent's monkey-patching by itself; nothing here may import Django or
# psycopg, since the gevent worker patches only after this file is read.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))  # gthread
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))  # gevent, per worker

# gevent reads each request's headers under this timeout too: a client trickling them is dropped.
keepalive = 2
timeout = 30
graceful_timeout = 20
accesslog = "-"
# No runtime control socket (gunicorn 27 would create one in $HOME): nothing here uses it.
control_socket_disable = True
