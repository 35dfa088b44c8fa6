"""The API's Prometheus middleware: django-prometheus', safe with any header a client can send."""

from __future__ import annotations

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
