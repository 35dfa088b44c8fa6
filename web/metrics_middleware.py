"""The API's Prometheus middleware: django-prometheus', safe with any header a client can send."""

from __future__ import annotations

from django_prometheus.middleware import PrometheusAfterMiddleware as _PrometheusAfterMiddleware
from django_prometheus.utils import Time


class PrometheusAfterMiddleware(_PrometheusAfterMiddleware):
    """django-prometheus' own, with two differences; the metrics, their labels and values are the library's.

    - A Content-Length that is not a number counts as 0: its process_request does int(Content-Length),
      so `Content-Length: abc` was a 500 before the request reached the view that answers it with a 400.
    - Each labelled child is looked up once per process and kept: prometheus_client's `labels()` checks
      and sorts the label names on every call, ten calls a request, about a twentieth of the CPU of a
      `GET /api/orders/:id` (docs/profiles/server.md). It returns the same child for the same values
      every time, and the values here (views, methods, statuses, charsets) are as few as the children
      the metric keeps anyway.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._children: dict[tuple, object] = {}

    def label_metric(self, metric, request, response=None, **labels):
        if not labels:
            return metric
        key = (metric, *labels.items())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(**labels)
        return child

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
