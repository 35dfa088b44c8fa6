"""The orders domain's refusals; the API's exception handler gives each its status code and message."""

from __future__ import annotations

from core.exceptions import ConflictError, DomainError, NotAuthorizedError, NotFoundError, UnprocessableError


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


class IdempotencyKeyRefused(DomainError):
    """The request's `Idempotency-Key` cannot be honoured; the answer names the header as its field."""

    field = "Idempotency-Key"


class IdempotencyKeyMalformed(IdempotencyKeyRefused):
    """The `Idempotency-Key` header is empty, longer than 255 characters or not printable ASCII."""

    message = "Idempotency-Key must be 1 to 255 printable ASCII characters"


class IdempotencyKeyReused(IdempotencyKeyRefused, UnprocessableError):
    """The `Idempotency-Key` was used before with another request body."""

    message = "Idempotency-Key was already used with another request body"


class IdempotencyKeyInProgress(ConflictError):
    """Another request with this `Idempotency-Key` has not finished yet."""

    message = "A request with this Idempotency-Key is still in progress"
    # The request it waits for holds the key for one short transaction.
    retry_after_seconds = 1
