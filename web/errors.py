"""One mapping from every failure to the platform's `{"errors": [...]}` body."""

from __future__ import annotations

import logging
import re

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, UnreadablePostError
from django.utils.http import parse_header_parameters
from rest_framework import exceptions, status
from rest_framework.response import Response

from core.exceptions import ConflictError, DomainError, NotAuthorizedError, NotFoundError, UnprocessableError

logger = logging.getLogger(__name__)


class NotAuthorized(exceptions.NotAuthenticated):
    """401 `Not authorized`: not signed in, or not the owner (the course's NotAuthorizedError)."""

    default_detail = "Not authorized"


class NotFound(exceptions.NotFound):
    default_detail = "Not Found"


class RequestBodyTooLarge(exceptions.APIException):
    """413: the body is over DATA_UPLOAD_MAX_MEMORY_SIZE (Django's RequestDataTooBig)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large"


class ServiceUnavailable(exceptions.APIException):
    """503 while the database cannot be reached: the client may retry, nothing it sent was wrong."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Service unavailable"


# A media type as RFC 9110 spells one (token/token), short enough to say back to the client.
ECHOABLE_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,60}/[A-Za-z0-9!#$%&'*+.^_`|~-]{1,60}")


def unsupported_media_type(request) -> exceptions.UnsupportedMediaType:
    """415 naming the type alone: DRF's message repeats the whole header, a multipart boundary and
    whatever other parameters the client put there included."""
    media_type, _ = parse_header_parameters(getattr(request, "content_type", "") or "")
    return exceptions.UnsupportedMediaType(media_type if ECHOABLE_MEDIA_TYPE.fullmatch(media_type) else "")


# What the database raises when it cannot be reached (or drops the connection), on every backend.
DATABASE_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


def api_exception_for(exc: BaseException) -> exceptions.APIException | None:
    """The answer to a Django-level failure that is not the code's fault, or None for a real fault.

    Shared by the DRF exception handler and the Django error views (handler400, handler500), so a
    body that is too large or a database that is down reads the same on every route.
    """
    if isinstance(exc, RequestDataTooBig):
        return RequestBodyTooLarge()
    if isinstance(exc, (SuspiciousOperation, UnreadablePostError)):
        # TooManyFieldsSent, TooManyFilesSent, DisallowedHost, a body the client broke off...
        return exceptions.ParseError("Bad Request")
    if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        return ServiceUnavailable()
    return None


def error_body(message: str, field: str | None = None) -> dict:
    error = {"message": message}
    if field:
        error["field"] = field
    return {"errors": [error]}


def _validation_errors(detail, field: str | None = None) -> list[dict]:
    """Flatten DRF's nested validation detail into a list of {message, field}."""
    if isinstance(detail, dict):
        errors = []
        for key, value in detail.items():
            name = None if key in ("non_field_errors", "detail") else (f"{field}.{key}" if field else key)
            errors.extend(_validation_errors(value, name))
        return errors
    if isinstance(detail, list):
        return [error for item in detail for error in _validation_errors(item, field)]
    error = {"message": str(detail)}
    if field:
        error["field"] = field
    return [error]


def exception_handler(exc, context):
    if isinstance(exc, exceptions.UnsupportedMediaType):
        exc = unsupported_media_type(context.get("request"))
    elif isinstance(exc, (Http404, NotFoundError)):
        exc = NotFound()
    elif isinstance(exc, (DjangoPermissionDenied, NotAuthorizedError)):
        exc = NotAuthorized()
    elif isinstance(exc, ConflictError):
        response = Response(error_body(exc.message, exc.field), status=status.HTTP_409_CONFLICT)
        response["Retry-After"] = str(exc.retry_after_seconds)
        return response
    elif isinstance(exc, UnprocessableError):
        return Response(error_body(exc.message, exc.field), status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    elif isinstance(exc, DomainError):
        # A business rule the request broke, e.g. `Ticket is already reserved`: 400 with the rule's words.
        return Response(error_body(exc.message, exc.field), status=status.HTTP_400_BAD_REQUEST)
    elif (known := api_exception_for(exc)) is not None:
        if isinstance(known, ServiceUnavailable):
            logger.warning("Database unavailable: %s", exc)
        exc = known

    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed, exceptions.PermissionDenied)):
        response = Response(error_body("Not authorized"), status=status.HTTP_401_UNAUTHORIZED)
        response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    if isinstance(exc, exceptions.NotFound):
        return Response(error_body("Not Found"), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, exceptions.ValidationError):
        return Response({"errors": _validation_errors(exc.detail)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.APIException):
        response = Response(error_body(str(exc.detail)), status=exc.status_code)
        if getattr(exc, "wait", None):
            response["Retry-After"] = str(int(exc.wait))
        if isinstance(exc, exceptions.MethodNotAllowed) and context.get("view") is not None:
            response["Allow"] = ", ".join(context["view"].allowed_methods)
        return response

    logger.exception("Unhandled error in %s", context.get("view").__class__.__name__ if context.get("view") else "view")
    return Response(error_body("Something went wrong"), status=status.HTTP_500_INTERNAL_SERVER_ERROR)
