"""The transactional outbox: events are rows written beside the change they report."""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction
from django.utils import timezone

from messaging.events import Event
from messaging.models import OutboxEvent


def outbox_enqueue(*, event: Event) -> OutboxEvent:
    """Record `event` for publishing; only inside the transaction that makes the change it reports."""
    if not connection.in_atomic_block:
        raise RuntimeError("outbox_enqueue must run inside the transaction of the change it reports")
    # Round-trip through the schema: what we publish is checked like what we consume.
    payload = type(event).from_payload(event.to_payload()).to_payload()
    return OutboxEvent.objects.create(subject=event.subject.value, payload=payload)


def outbox_pending(*, limit: int = 100) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(sent_at__isnull=True).order_by("created_at", "id")[:limit])


def outbox_mark_sent(*, ids: list[str]) -> int:
    return OutboxEvent.objects.filter(id__in=ids, sent_at__isnull=True).update(sent_at=timezone.now())


@transaction.atomic
def outbox_prune(*, older_than: dt.timedelta) -> int:
    """Forget events published long ago (the stream keeps them)."""
    deleted, _ = OutboxEvent.objects.filter(sent_at__lt=timezone.now() - older_than).delete()
    return deleted
