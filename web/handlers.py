"""Django's WSGI handler: bodies read first (chunked ones too), a bounded number of requests at once in Django,
and a request that survives any Content-Type charset."""

from __future__ import annotations

import codecs
import io
import json
import logging
import threading
import time

import django
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.utils.http import parse_header_parameters
from prometheus_client import Counter

from web.access_log import access_logger, log_access

logger = logging.getLogger(__name__)

# Text codecs whose strict decoding fails with a bare UnicodeError, which Django's
# `except UnicodeDecodeError` around query-string decoding does not catch.
CODECS_RAISING_BARE_UNICODE_ERROR = frozenset({"idna", "punycode", "undefined"})
# A body is read this much at a time (a chunked one at most one byte past the size limit).
BODY_READ_BYTES = 64 * 1024


def is_usable_charset(charset: str) -> bool:
    """Whether Django can decode a query string or a form in `charset` without an unexpected error."""
    try:
        codec = codecs.lookup(charset)
        # codecs.lookup() also finds binary transforms (base64, rot13, zlib...); bytes.decode()
        # refuses them with LookupError.
        b"a".decode(codec.name, "ignore")
    except (LookupError, UnicodeError):
        return False
    return codec.name not in CODECS_RAISING_BARE_UNICODE_ERROR


class UsableCharsetMixin:
    """Ignore a declared charset that cannot decode text, as Django already ignores an unknown one.

    Django checks the charset with codecs.lookup() only, then decodes the query string with it
    while building the request, before any middleware runs: `?x=1` with
    `Content-Type: application/json; charset=base64` was a bare 500 from the server.
    """

    def _set_content_type_params(self, meta):
        self.content_type, self.content_params = parse_header_parameters(meta.get("CONTENT_TYPE", ""))
        charset = self.content_params.get("charset")
        if charset and is_usable_charset(charset):
            self.encoding = charset


def has_unframed_body(environ: dict) -> bool:
    """A `Transfer-Encoding: chunked` body without Content-Length, which the server ends for us.

    `wsgi.input_terminated` is the server's promise that reading wsgi.input to its end stops at
    the end of this request's body (gunicorn makes it, whatever its worker class); without it,
    reading a body of unknown length could block on the next request of the connection.
    """
    return (
        not environ.get("CONTENT_LENGTH")
        and bool(environ.get("wsgi.input_terminated"))
        and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    )


class OrdersWSGIRequest(UsableCharsetMixin, WSGIRequest):
    """Django's request, safe with a Content-Length that is not a length."""

    def __init__(self, environ):
        content_length = environ.get("CONTENT_LENGTH")
        if content_length is not None and not (content_length.isascii() and content_length.isdigit()):
            # Django reads a Content-Length that is not a length as 0; others (DRF, django-prometheus)
            # int() it again and raise. gunicorn refuses such a header; other servers may not.
            del environ["CONTENT_LENGTH"]
        super().__init__(environ)


def read_body_first(environ: dict) -> None:
    """Read the request's body into memory before the request takes a slot, as a buffering proxy does.

    A body sent with a Content-Length within DATA_UPLOAD_MAX_MEMORY_SIZE is read whole; a larger one is
    left unread, for Django to answer (413, or 401 first) without reading it. A chunked body (no Content-Length) is
    read up to one byte past the limit, and CONTENT_LENGTH says how much arrived: Django only ever reads
    CONTENT_LENGTH bytes, so such a body was silently empty, and over the limit it now gets the same 413.
    A body that cannot be read (broken chunk framing, a client gone) is an empty one: raised here, the
    server's exception would escape Django and the server would answer a bare 500.
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    length = environ.get("CONTENT_LENGTH") or ""
    unframed = has_unframed_body(environ)
    if unframed:
        wanted = None if limit is None else limit + 1
    elif length.isascii() and length.isdigit() and int(length) > 0 and (limit is None or int(length) <= limit):
        wanted = int(length)
    else:
        return
    stream, body = environ["wsgi.input"], io.BytesIO()
    try:
        # In pieces: one read of limit + 1 bytes made the server buffer them all before copying
        # them out, twice the memory per upload at the moment they crossed over.
        while wanted is None or body.tell() < wanted:
            size = BODY_READ_BYTES if wanted is None else min(BODY_READ_BYTES, wanted - body.tell())
            if not (piece := stream.read(size)):
                break
            body.write(piece)
    except Exception as exc:  # the server's own exception types
        logger.info("Request body could not be read: %s", exc.__class__.__name__)
        body = io.BytesIO()
    if unframed:
        environ["CONTENT_LENGTH"] = str(body.tell())  # limit + 1 when over the limit: Django answers 413
    body.seek(0)
    environ["wsgi.input"] = body


REFUSED_BUSY = Counter(
    "orders_api_refused_busy",
    "Requests answered 503 because no request slot freed up within API_REQUEST_SLOT_WAIT_SECONDS",
)
BUSY_BODY = json.dumps({"errors": [{"message": "Service unavailable"}]}).encode()
# Liveness answers whatever the other requests wait for: a probe must not fail because the database is slow.
UNGATED_PATHS = frozenset({"/healthz"})


class OrdersWSGIHandler(WSGIHandler):
    """Django's handler: the body read first, then at most `slots` requests of this process in Django at once.

    The server runs many threads so that clients still sending their bodies hold a thread and nothing
    else (docs/profiles/server.md). Threads that all run Python contend for the GIL, and on 2 cores that
    contention cost more CPU than the requests' own work; a request waits for a slot here, asleep, once
    its body is in. One that waits longer than `wait` seconds is answered 503 `Service unavailable`
    with Retry-After, so a backlog (a slow database) is refused within a bound instead of piling up.
    """

    request_class = OrdersWSGIRequest

    def __init__(self, slots: int = 0, wait: float = 10.0) -> None:
        super().__init__()
        self.slots = threading.BoundedSemaphore(slots) if slots > 0 else None
        self.wait = wait

    def __call__(self, environ, start_response):
        read_body_first(environ)
        if self.slots is None or environ.get("PATH_INFO") in UNGATED_PATHS:
            return super().__call__(environ, start_response)
        started = time.perf_counter()
        if not self.slots.acquire(timeout=self.wait):
            return self.busy(environ, start_response, started)
        try:
            return super().__call__(environ, start_response)
        finally:
            self.slots.release()

    def busy(self, environ, start_response, started: float):
        REFUSED_BUSY.inc()
        logger.warning("No request slot free after %.1f s: 503", time.perf_counter() - started)
        if access_logger.isEnabledFor(logging.INFO):
            path = environ.get("PATH_INFO", "") + (f"?{query}" if (query := environ.get("QUERY_STRING")) else "")
            log_access(environ, environ.get("REQUEST_METHOD", "-"), path, 503, str(len(BUSY_BODY)), started)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(BUSY_BODY))), ("Retry-After", "1")]
        start_response("503 Service Unavailable", headers)
        return [BUSY_BODY]


def get_wsgi_application() -> OrdersWSGIHandler:
    """django.core.wsgi.get_wsgi_application(), with the hardened request and the request slots."""
    django.setup(set_prefix=False)
    return OrdersWSGIHandler(settings.API_REQUEST_SLOTS, settings.API_REQUEST_SLOT_WAIT_SECONDS)
