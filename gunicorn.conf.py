"""gunicorn settings: the contract's bind address, workers from WEB_CONCURRENCY."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:3000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
accesslog = "-"
timeout = 30
graceful_timeout = 20
# No runtime control socket (gunicorn 27 would create one in $HOME): nothing here uses it.
control_socket_disable = True
