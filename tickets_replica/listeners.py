"""What happens on `ticket:created` and `ticket:updated`: the replica follows the tickets service."""

from __future__ import annotations

from messaging.events import Subject, TicketCreated, TicketUpdated
from messaging.listener import Listener
from tickets_replica.services import TicketChange, tickets_apply


def ticket_change(event: TicketCreated | TicketUpdated) -> TicketChange:
    return TicketChange(
        id=event.id,
        title=event.title,
        price=event.price,
        version=event.version,
        created=isinstance(event, TicketCreated),
    )


def on_ticket_events(events: list[TicketCreated | TicketUpdated]) -> list[str]:
    """A batch of either subject, in one transaction, with the outcome of applying each one by one.

    `ticket:created` creates the ticket unless it is there (a repeat, or a later update came first).
    `ticket:updated` carries the whole ticket: it is applied when its version is newer than the
    replica's (creating the ticket if missing); an older or equal one is ignored. Nothing waits for
    a missing version.
    """
    return [outcome.value for outcome in tickets_apply(changes=[ticket_change(e) for e in events]).outcomes]


def on_ticket_created(event: TicketCreated) -> str:
    return on_ticket_events([event])[0]


def on_ticket_updated(event: TicketUpdated) -> str:
    return on_ticket_events([event])[0]


LISTENERS = [
    Listener(Subject.TICKET_CREATED, on_ticket_created, handle_batch=on_ticket_events),
    Listener(Subject.TICKET_UPDATED, on_ticket_updated, handle_batch=on_ticket_events),
]
