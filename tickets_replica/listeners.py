"""What happens on `ticket:created` and `ticket:updated`: the replica follows the tickets service."""

from __future__ import annotations

from messaging.events import Subject, TicketCreated, TicketUpdated
from messaging.listener import Listener, NotYet
from tickets_replica.services import ReplicaOutcome, ticket_apply_update, ticket_create


def on_ticket_created(event: TicketCreated) -> str:
    """Create the replica ticket; a repeat of the event is acknowledged and changes nothing."""
    outcome = ticket_create(id=event.id, title=event.title, price=event.price, version=event.version)
    return outcome.value


def on_ticket_updated(event: TicketUpdated) -> str:
    """Apply version n only on top of n - 1; older or equal versions are ignored, gaps wait."""
    outcome = ticket_apply_update(id=event.id, title=event.title, price=event.price, version=event.version)
    if outcome is ReplicaOutcome.GAP:
        raise NotYet(f"ticket {event.id} is not at version {event.version - 1} yet")
    return outcome.value


LISTENERS = [
    Listener(Subject.TICKET_CREATED, on_ticket_created),
    Listener(Subject.TICKET_UPDATED, on_ticket_updated),
]
