"""Connecting to NATS and setting up the JetStream stream and the durable consumers."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

import nats
from django.conf import settings
from nats.aio.client import Client
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


async def connect(*, name: str, url: str | None = None, retry_forever: bool = True) -> Client:
    """A client that reconnects forever (the worker) or gives up after a few tries (the CLI)."""

    async def on_error(exc: Exception) -> None:
        logger.warning("nats: %s", exc or type(exc).__name__)

    async def on_disconnected() -> None:
        if retry_forever and not client.is_closed:
            logger.warning("nats: disconnected")

    async def on_reconnected() -> None:
        logger.info("nats: reconnected to %s", client.connected_url.netloc if client.connected_url else "?")

    client = await nats.connect(
        servers=nats_servers(url or settings.NATS_URL),
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1 if retry_forever else 3,
        reconnect_time_wait=1,
        connect_timeout=2,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    return client


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
        max_deliver=-1,  # the listener decides when a message is poison
        max_ack_pending=1000,
    )
    try:
        await js.add_consumer(stream, config)
    except BadRequestError:
        # nats-server 2.9 refuses to re-create a durable whose settings differ; keep the existing one.
        await js.consumer_info(stream, name)
    return name
