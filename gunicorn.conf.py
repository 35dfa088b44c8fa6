"""gunicorn settings: the contract's bind address, workers from WEB_CONCURRENCY, stock gthread."""

from __future__ import annotations

import os
import sys

from ticketing_orders.server import fresh_metrics_dir, jwt_key_problem
from web.access_log import json_logconfig

# Checked as gunicorn loads this file, before it prints anything: otherwise every worker fails to
# load the settings with a traceback and the reason drowns in a hundred lines of them.
if _jwt_key_problem := jwt_key_problem(os.environ):
    sys.exit(_jwt_key_problem)

# granian (`python -m ticketing_orders.server`) is the default server; gunicorn serves the same application
# for platforms whose tooling expects it. Choose it behind a proxy that buffers whole requests (the
# ingress does): gthread hands a connection to a thread at its first byte, and a client that
# trickles its request holds that thread until it is done (README, "Choosing the server").
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:3000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
# One worker per core beat one worker by 1.4-2x in CPU per request; 2 x 4 measured no worse than
# 2 x 8, 2 x 16, 3 x 4 or 4 x 2 (docs/profiles/server.md, "gunicorn").
threads = int(os.environ.get("GUNICORN_THREADS", "4"))

# How long an idle kept-alive connection stays open.
keepalive = 2
timeout = 30
graceful_timeout = 20
# The application writes the access lines (web/access_log.py: with the request id, under any server).
accesslog = None
# No runtime control socket (gunicorn 27 would create one in $HOME): nothing here uses it.
control_socket_disable = True

# Prometheus metrics of every worker process, added up by /metrics (ticketing_orders/server.py explains).
fresh_metrics_dir(os.environ)


def child_exit(server, worker) -> None:
    """A worker process is gone: its live gauges stop counting (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# With LOG_FORMAT=json gunicorn's own lines are JSON too.
if os.environ.get("LOG_FORMAT") == "json":
    logconfig_dict = json_logconfig(os.environ.get("LOG_LEVEL", "INFO"))
