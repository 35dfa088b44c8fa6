"""Changes to the ticket replica, driven by the tickets service's events."""

from __future__ import annotations

import enum
import logging

from django.db import IntegrityError, transaction

from tickets_replica.models import Ticket

logger = logging.getLogger(__name__)


class ReplicaOutcome(enum.Enum):
    APPLIED = "applied"
    IGNORED = "ignored"  # a repeat or an older version: already reflected
    GAP = "gap"  # an earlier version (or the creation) has not arrived yet


def ticket_create(*, id: str, title: str, price: float, version: int) -> ReplicaOutcome:
    """Insert the ticket unless it is already there (a repeated `ticket:created`)."""
    try:
        with transaction.atomic():
            Ticket.objects.create(id=id, title=title, price=price, version=version)
    except IntegrityError:
        return ReplicaOutcome.IGNORED
    return ReplicaOutcome.APPLIED


def ticket_apply_update(*, id: str, title: str, price: float, version: int) -> ReplicaOutcome:
    """Apply version `version` only on top of `version - 1`; the UPDATE's row count decides."""
    with transaction.atomic():
        changed = Ticket.objects.filter(id=id, version=version - 1).update(title=title, price=price, version=version)
        if changed:
            return ReplicaOutcome.APPLIED
        current = Ticket.objects.filter(id=id).values_list("version", flat=True).first()
    if current is not None and current >= version:
        return ReplicaOutcome.IGNORED
    return ReplicaOutcome.GAP
