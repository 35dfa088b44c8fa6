"""What the worker tells operators: Prometheus metrics and a liveness answer on WORKER_METRICS_PORT."""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from wsgiref.simple_server import make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

from messaging.events import Subject

logger = logging.getLogger(__name__)


@functools.cache
def worker_metrics() -> SimpleNamespace:
    """The worker's metrics, made on first use: the API processes import this module (through the
    listeners) but must not export worker metrics, which under gunicorn's multiprocess collection
    would show as zeros beside the API's own."""
    return SimpleNamespace(
        events=Counter(
            "orders_worker_events",
            "Consumed events by subject and outcome (applied, ignored, rejected, retrying)",
            ["subject", "outcome"],
        ),
        consumer_pending=Gauge(
            "orders_worker_consumer_pending",
            "Messages on the stream not yet delivered to the durable consumer",
            ["subject"],
        ),
        consumer_ack_pending=Gauge(
            "orders_worker_consumer_ack_pending",
            "Messages delivered to the consumer and not yet acknowledged",
            ["subject"],
        ),
        outbox_backlog=Gauge("orders_worker_outbox_backlog", "Outbox rows not yet published"),
        outbox_oldest_age=Gauge(
            "orders_worker_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0: none)"
        ),
        relay_latency=Histogram(
            "orders_worker_relay_publish_seconds",
            "From an outbox row's commit to the stream's acknowledgement of its publish",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        ),
        failed_events_open=Gauge("orders_worker_failed_events_open", "Failed events set aside and not resolved"),
        orders=Counter(
            "orders_worker_orders",
            "Order changes: created and cancelled as their events are published (by any process), "
            "expired (expiration:complete or the safety net) and completed (payment:created) as applied",
            ["change"],
        ),
        nats_connected=Gauge("orders_worker_nats_connected", "1 while the worker is connected to NATS"),
    )


# Event outcomes that change an order, by subject.
_ORDER_CHANGE_BY_SUBJECT = {Subject.EXPIRATION_COMPLETE.value: "expired", Subject.PAYMENT_CREATED.value: "completed"}
_ORDER_CHANGE_BY_PUBLISHED = {Subject.ORDER_CREATED.value: "created", Subject.ORDER_CANCELLED.value: "cancelled"}


def record_outcome(subject: str, outcome: str, count: int = 1) -> None:
    """One consumed event (or `count` of them) settled with `outcome`."""
    metrics = worker_metrics()
    metrics.events.labels(subject=subject, outcome=outcome).inc(count)
    if outcome == "applied" and subject in _ORDER_CHANGE_BY_SUBJECT:
        metrics.orders.labels(change=_ORDER_CHANGE_BY_SUBJECT[subject]).inc(count)


def record_published(subject: str, latency_seconds: float) -> None:
    """One outbox row acknowledged by the stream, `latency_seconds` after its commit."""
    metrics = worker_metrics()
    metrics.relay_latency.observe(max(latency_seconds, 0.0))
    if subject in _ORDER_CHANGE_BY_PUBLISHED:
        metrics.orders.labels(change=_ORDER_CHANGE_BY_PUBLISHED[subject]).inc()


def record_expired(count: int) -> None:
    """Orders expired by the safety net."""
    if count:
        worker_metrics().orders.labels(change="expired").inc(count)


class WorkerHealth:
    """Alive = every loop has beaten recently, and NATS and the database are reachable or have been away
    only briefly.

    Each loop calls `beat(name)` once per pass (a fetch that times out is a pass); a loop stuck
    for `stall_seconds` (a deadlock, a hung database call) makes the worker unhealthy, and so
    does NATS being unreachable for longer than `nats_down_seconds`, or the database failing every call
    for longer than `database_down_seconds`, so Kubernetes restarts it. A shorter outage is listed in
    `problems` at once, while the answer stays 200 (`degraded`): a restart would not bring a link back.
    """

    def __init__(
        self,
        *,
        stall_seconds: float,
        nats_down_seconds: float,
        database_down_seconds: float = 120,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.stall_seconds = stall_seconds
        self.nats_down_seconds = nats_down_seconds
        self.database_down_seconds = database_down_seconds
        self._beats: dict[str, float] = {}
        self._client = None
        self._away_since: float | None = None
        # dependency ("database", "nats") -> (failing since, the last failure in words)
        self._failing: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def expect(self, loops: Iterable[str]) -> None:
        """Register the loops that must beat (each counts as just started)."""
        now = self.clock()
        with self._lock:
            self._beats.update(dict.fromkeys(loops, now))

    def beat(self, loop: str) -> None:
        self._beats[loop] = self.clock()

    def watch(self, client) -> None:
        self._client = client

    def failing(self, dependency: str, exc: BaseException) -> None:
        """A call to `dependency` failed (timed out, refused, dropped); it counts as down until `working`."""
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'}"
        since = self._failing.get(dependency, (self.clock(), ""))[0]
        self._failing[dependency] = (since, reason[:200])

    def working(self, dependency: str) -> None:
        """A call to `dependency` succeeded. Cheap: this runs after every database call of the worker."""
        if dependency in self._failing:
            self._failing.pop(dependency, None)

    def check(self) -> tuple[bool, dict]:
        """(healthy, problems): problems lists every loop, link or dependency in trouble now."""
        now = self.clock()
        problems: dict[str, str] = {}
        healthy = True
        with self._lock:
            beats = dict(self._beats)
        if not beats:
            problems["loops"] = "not started"
            healthy = False
        for loop, last in beats.items():
            if now - last > self.stall_seconds:
                problems[loop] = f"no progress for {now - last:.0f}s"
                healthy = False
        client = self._client
        connected = client is not None and client.is_connected
        worker_metrics().nats_connected.set(1 if connected else 0)
        if connected:
            self._away_since = None
        else:
            self._away_since = self._away_since or now
            away = now - self._away_since
            problems["nats"] = f"{'not connected after' if client is None else 'reconnecting for'} {away:.0f}s"
            healthy = healthy and away <= self.nats_down_seconds
        limits = {"nats": self.nats_down_seconds, "database": self.database_down_seconds}
        for dependency, (since, reason) in dict(self._failing).items():
            problems.setdefault(dependency, f"{reason} (failing for {now - since:.0f}s)")
            healthy = healthy and now - since <= limits.get(dependency, self.database_down_seconds)
        return healthy, problems


# The worker process's one health state: its loops beat it, /healthz reads it.
HEALTH = WorkerHealth(stall_seconds=60, nats_down_seconds=120)


def beat(loop: str) -> None:
    """Called by each worker loop once per pass."""
    HEALTH.beat(loop)


class MetricsServer:
    """/metrics and /healthz on their own small HTTP server, in a thread: they answer even while
    the event loop is busy, which is what a liveness probe must see through."""

    def __init__(self, *, host: str, port: int, health: WorkerHealth, registry=REGISTRY) -> None:
        self.health = health
        metrics_app = make_wsgi_app(registry)

        def app(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                healthy, problems = health.check()
                status = "unavailable" if not healthy else ("degraded" if problems else "ok")
                body = json.dumps({"status": status, "problems": problems}).encode()
                start_response(
                    "200 OK" if healthy else "503 Service Unavailable",
                    [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                )
                return [body]
            if path == "/metrics":
                return metrics_app(environ, start_response)
            body = b'{"errors": [{"message": "Not Found"}]}'
            start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]

        self.server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name="worker-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self.thread.start()
        logger.info("metrics and /healthz on port %s", self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
