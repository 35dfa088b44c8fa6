"""Connecting to NATS and setting up the JetStream stream and the durable consumers."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from urllib.parse import urlsplit, urlunsplit

import nats
from django.conf import settings
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoServersError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from messaging.events import Subject

logger = logging.getLogger(__name__)


def nats_servers(url: str) -> list[str]:
    """`NATS_URL` as nats-py wants it; the course's `http://nats-srv:4222` form is accepted too."""
    servers = []
    for part in url.split(","):
        part = part.strip()
        # A bare `nats-srv:4222` would otherwise read as scheme `nats-srv`.
        parts = urlsplit(part if "://" in part else f"nats://{part}")
        scheme = "nats" if parts.scheme in ("http", "") else ("tls" if parts.scheme == "https" else parts.scheme)
        servers.append(urlunsplit((scheme, parts.netloc or parts.path, "", "", "")))
    return servers


def describe_error(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# The first connection is retried at growing intervals, up to this one.
CONNECT_RETRY_MAX_SECONDS = 30
# While reconnecting, the same failure is logged at most this often.
RECONNECT_LOG_EVERY_SECONDS = 30


async def connect(*, name: str, url: str | None = None, retry_forever: bool = True) -> Client:
    """A client that (re)connects forever (the worker) or gives up after a few tries (the CLI).

    Until the first connection the wait between tries grows (1 s, 2 s, 4 s … 30 s), each failure
    said once in plain words; once connected, nats-py reconnects by itself, and a lasting outage
    is logged every RECONNECT_LOG_EVERY_SECONDS instead of on every try.
    """
    servers = nats_servers(url or settings.NATS_URL)
    where = ", ".join(servers)
    connected = False
    last_logged = -float("inf")
    last_error: Exception | None = None

    async def on_error(exc: Exception) -> None:
        nonlocal last_logged, last_error
        if not connected:
            last_error = exc  # said below, once per try
            return
        if time.monotonic() - last_logged >= RECONNECT_LOG_EVERY_SECONDS:
            last_logged = time.monotonic()
            logger.warning("cannot reach NATS at %s (NATS_URL): %s; reconnecting", where, describe_error(exc))

    async def on_disconnected() -> None:
        if retry_forever and not client.is_closed:
            logger.warning("nats: disconnected from %s; reconnecting", where)

    async def on_reconnected() -> None:
        nonlocal last_logged
        last_logged = -float("inf")
        logger.info("nats: reconnected to %s", client.connected_url.netloc if client.connected_url else "?")

    delay = 1.0
    for attempt in itertools.count(1):
        try:
            client = await nats.connect(
                servers=servers,
                name=name,
                allow_reconnect=True,
                # Two tries per server for this first connection; lifted below once connected.
                max_reconnect_attempts=1,
                reconnect_time_wait=0.2,
                # Bounded waits (settings, "Bounded waits on NATS"): a connect to a server that drops
                # packets gives up, and a silent link is declared dead after a few missed pongs, so
                # the client moves on to another server of the cluster within seconds.
                connect_timeout=settings.NATS_CONNECT_TIMEOUT_SECONDS,
                ping_interval=settings.NATS_PING_INTERVAL_SECONDS,
                max_outstanding_pings=settings.NATS_MAX_OUTSTANDING_PINGS,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            )
        except (NoServersError, OSError, TimeoutError, NatsError) as exc:
            if not retry_forever and attempt >= 3:
                raise
            logger.warning(
                "cannot reach NATS at %s (NATS_URL): %s; retrying in %gs",
                where,
                describe_error(last_error or exc),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, CONNECT_RETRY_MAX_SECONDS)
            continue
        connected = True
        client.options["max_reconnect_attempts"] = -1 if retry_forever else 3
        client.options["reconnect_time_wait"] = 1
        logger.info("nats: connected to %s", client.connected_url.netloc if client.connected_url else "?")
        return client
    raise AssertionError("unreachable")


async def ensure_streams(js: JetStreamContext, *, stream_name: str | None = None) -> dict[Subject, str]:
    """Map every subject to the stream that captures it, creating or extending `NATS_STREAM` as needed.

    A subject already captured by another service's stream stays there: JetStream refuses overlaps.
    """
    stream_name = stream_name or settings.NATS_STREAM
    streams: dict[Subject, str] = {}
    uncaptured: list[Subject] = []
    for subject in Subject:
        try:
            streams[subject] = await js.find_stream_name_by_subject(subject.value)
        except NotFoundError:
            uncaptured.append(subject)
    if uncaptured:
        wanted = [s.value for s in uncaptured]
        try:
            info = await js.stream_info(stream_name)
        except NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=stream_name,
                    subjects=wanted,
                    storage=StorageType.FILE,
                    duplicate_window=settings.NATS_DUPLICATE_WINDOW_SECONDS,
                    num_replicas=settings.NATS_STREAM_REPLICAS,
                )
            )
            logger.info("created stream %s for %s", stream_name, ", ".join(wanted))
        else:
            config = info.config
            config.subjects = sorted({*(config.subjects or []), *wanted})
            await js.update_stream(config)
            logger.info("added %s to stream %s", ", ".join(wanted), stream_name)
        streams.update(dict.fromkeys(uncaptured, stream_name))
    return streams


def jetstream(client: Client) -> JetStreamContext:
    """The client's JetStream context, its API requests (stream and consumer info) bounded by
    NATS_REQUEST_TIMEOUT_SECONDS."""
    return client.jetstream(timeout=settings.NATS_REQUEST_TIMEOUT_SECONDS)


def durable_name(subject: Subject) -> str:
    """`orders-service-ticket-created`: the queue group, then the subject (durable names take no colon)."""
    return f"{settings.NATS_QUEUE_GROUP}-{subject.value.replace(':', '-')}"


async def ensure_consumer(js: JetStreamContext, *, stream: str, subject: Subject) -> str:
    """Create, or keep, the durable pull consumer every worker replica shares for `subject`."""
    name = durable_name(subject)
    config = ConsumerConfig(
        durable_name=name,
        filter_subject=subject.value,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.EVENT_ACK_WAIT_SECONDS,
        # The listener, not the server, decides when a message is poison, and it naks with its own
        # delay (listener.retry_delay). JetStream's max_deliver drops a message whose last delivery
        # ends unsettled (a worker stopping hands it back, a crash, the database down), with no
        # FailedEvent for the admin; its backoff replaces ack_wait by backoff[0] (a batch still being
        # applied after 0.5 s would go to another replica) and a plain nak ignores it. Measured on
        # nats-server 2.15: docs/profiles/worker-consume.md, "Retries".
        max_deliver=-1,
        max_ack_pending=1000,
    )
    try:
        await js.add_consumer(stream, config)
    except BadRequestError:
        # nats-server 2.9 refuses to re-create a durable whose settings differ; keep the existing one.
        await js.consumer_info(stream, name)
    return name
