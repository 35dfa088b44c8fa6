"""Rebuilding the ticket replica from the stream: every ticket event again, the newest version winning."""

from __future__ import annotations

import dataclasses
import logging

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from messaging.events import EVENT_TYPES, InvalidEvent, Subject
from messaging.listener import run_db
from tickets_replica.listeners import ticket_change
from tickets_replica.services import tickets_apply

logger = logging.getLogger(__name__)

TICKET_SUBJECTS = (Subject.TICKET_CREATED, Subject.TICKET_UPDATED)


@dataclasses.dataclass
class RebuildSummary:
    """Tickets the rebuild created, updated or found as they should be; events read and skipped."""

    created: set[str] = dataclasses.field(default_factory=set)
    updated: set[str] = dataclasses.field(default_factory=set)
    seen: set[str] = dataclasses.field(default_factory=set)
    events: int = 0
    invalid: int = 0

    @property
    def unchanged(self) -> set[str]:
        return self.seen - self.created - self.updated

    def __str__(self) -> str:
        skipped = f"; {self.invalid} invalid, skipped" if self.invalid else ""
        return (
            f"created {len(self.created)}, updated {len(self.updated)}, unchanged {len(self.unchanged)}"
            f" ({self.events} ticket events read{skipped})"
        )


async def rebuild_subject(js: JetStreamContext, subject: Subject, summary: RebuildSummary, *, batch: int) -> None:
    """Read `subject` from the start of its stream with an ephemeral consumer, applying each batch."""
    try:
        stream = await js.find_stream_name_by_subject(subject.value)
    except NotFoundError:
        return  # no stream captures it: no such event was ever published
    # Ephemeral (not durable): the server forgets it once this command is gone; acking the last
    # message of each batch (AckPolicy.ALL) keeps the server's pending window open.
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.ALL,
        max_ack_pending=batch * 4,
        inactive_threshold=30,
    )
    subscription = await js.pull_subscribe(subject.value, stream=stream, config=config)
    try:
        remaining = (await subscription.consumer_info()).num_pending
        event_type = EVENT_TYPES[subject]
        while remaining:
            messages = await subscription.fetch(batch=min(batch, remaining), timeout=10)
            changes = []
            for msg in messages:
                try:
                    changes.append(ticket_change(event_type.from_bytes(msg.data)))
                except InvalidEvent:
                    summary.invalid += 1  # the worker set it aside as a failed event already
            result = await run_db(tickets_apply, changes=changes)
            await messages[-1].ack()
            summary.events += len(messages)
            summary.created |= result.created
            summary.updated |= result.updated - summary.created
            summary.seen |= result.created | result.updated | result.unchanged
            # Read up to the end as it stood when the rebuild reached it.
            remaining = messages[-1].metadata.num_pending
    finally:
        await subscription.unsubscribe()


async def rebuild_replica(js: JetStreamContext, *, batch: int) -> RebuildSummary:
    """Apply every `ticket:created` and `ticket:updated` on the stream again; safe while the worker runs."""
    summary = RebuildSummary()
    for subject in TICKET_SUBJECTS:
        await rebuild_subject(js, subject, summary, batch=batch)
        logger.info("rebuild: %s read, %s so far", subject, summary)
    return summary
