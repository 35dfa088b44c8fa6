"""The orders domain's refusals; the API's exception handler gives each its status code and message."""

from __future__ import annotations

from core.exceptions import DomainError, NotAuthorizedError, NotFoundError


class TicketNotFound(NotFoundError):
    pass


class OrderNotFound(NotFoundError):
    pass


class OrderNotOwned(NotAuthorizedError):
    """The order is someone else's."""


class TicketAlreadyReserved(DomainError):
    message = "Ticket is already reserved"


class CannotCancelCompletedOrder(DomainError):
    message = "Cannot cancel a completed order"


class UnknownCursor(DomainError):
    """`after` is not one of the caller's orders (unknown, or someone else's: the same answer)."""

    message = "after must be the id of one of your orders"
    field = "after"
