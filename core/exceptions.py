"""What a domain service refuses, in the domain's words: web.errors maps each kind to its HTTP answer."""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses because of its own rules (HTTP: 400 with `message`, and `field` if set)."""

    message = "Bad request"
    field: str | None = None

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class NotFoundError(DomainError):
    """What the caller names does not exist (HTTP: 404 `Not Found`)."""

    message = "Not Found"


class NotAuthorizedError(DomainError):
    """The caller may not touch what it names (HTTP: 401 `Not authorized`, as the Node services answer)."""

    message = "Not authorized"


class ConflictError(DomainError):
    """Another request holds what this one needs; worth retrying soon (HTTP: 409, with `Retry-After`)."""

    retry_after_seconds = 1


class UnprocessableError(DomainError):
    """Well-formed, but contradicts what the service already holds (HTTP: 422)."""
