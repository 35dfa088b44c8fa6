"""The API's Prometheus middleware: django-prometheus', safe with any header a client can send."""

from __future__ import annotations

import contextlib
import glob
import os
import re

from django_prometheus.middleware import PrometheusAfterMiddleware as _PrometheusAfterMiddleware
from django_prometheus.utils import Time


class PrometheusAfterMiddleware(_PrometheusAfterMiddleware):
    """django-prometheus' own, except that a Content-Length that is not a number counts as 0.

    Its process_request does int(Content-Length), so `Content-Length: abc` was a 500 before the
    request reached the view that answers it with a 400. Only the request counting differs: the
    rest (views, statuses, latencies) is the library's.
    """

    def process_request(self, request):
        transport = self._transport(request)
        method = self._method(request)
        self.label_metric(self.metrics.requests_by_method, request, method=method).inc()
        self.label_metric(self.metrics.requests_by_transport, request, transport=transport).inc()
        if request.headers.get("x-requested-with") == "XMLHttpRequest":
            self.label_metric(self.metrics.requests_ajax, request).inc()
        length = request.headers.get("content-length") or "0"
        self.label_metric(self.metrics.requests_body_bytes, request).observe(int(length) if length.isdigit() else 0)
        request.prometheus_after_middleware_event = Time()


def forget_dead_processes() -> None:
    """Drop the gauges of server processes that are gone from PROMETHEUS_MULTIPROC_DIR, as a worker starts.

    granian has no hook for a worker's exit (gunicorn.conf.py's child_exit does this under
    gunicorn), so a worker that replaces a dead one clears its gauges: what the dead one measured
    is no longer so. Counters and histograms stay: what they counted happened.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    for file in glob.glob(os.path.join(path, "gauge_*.db")):
        if (match := re.search(r"_(\d+)\.db$", file)) and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(file)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
