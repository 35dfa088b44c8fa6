"""Django's WSGI handler, with a request that reads chunked bodies and survives any Content-Type charset."""

from __future__ import annotations

import codecs
import io
import logging

import django
from django.conf import settings
from django.core.handlers.wsgi import LimitedStream, WSGIHandler, WSGIRequest
from django.utils.http import parse_header_parameters

logger = logging.getLogger(__name__)

# Text codecs whose strict decoding fails with a bare UnicodeError, which Django's
# `except UnicodeDecodeError` around query-string decoding does not catch.
CODECS_RAISING_BARE_UNICODE_ERROR = frozenset({"idna", "punycode", "undefined"})
# A chunked body is read this much at a time (and at most one byte past the size limit).
UNFRAMED_READ_BYTES = 64 * 1024


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
    """Django's request, plus chunked bodies read like any other.

    Django reads only CONTENT_LENGTH bytes of wsgi.input, so a chunked body (no Content-Length) was
    silently empty. Here it is buffered first, at most one byte past DATA_UPLOAD_MAX_MEMORY_SIZE,
    and CONTENT_LENGTH says how much arrived, as a buffering proxy would: Django's own limit check
    (413) and DRF's parsing then treat it exactly like a body sent with a Content-Length.
    """

    def __init__(self, environ):
        content_length = environ.get("CONTENT_LENGTH")
        if content_length is not None and not (content_length.isascii() and content_length.isdigit()):
            # Django reads a Content-Length that is not a length as 0; others (DRF, django-prometheus)
            # int() it again and raise. gunicorn refuses such a header; other servers may not.
            del environ["CONTENT_LENGTH"]
        super().__init__(environ)
        if has_unframed_body(environ):
            self._buffer_unframed_body(environ["wsgi.input"])

    def _buffer_unframed_body(self, stream) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = io.BytesIO()
        try:
            # In pieces: one read of limit + 1 bytes made the server buffer them all before copying
            # them out, twice the memory per upload at the moment they crossed over.
            while limit is None or body.tell() <= limit:
                wanted = UNFRAMED_READ_BYTES if limit is None else min(UNFRAMED_READ_BYTES, limit + 1 - body.tell())
                if not (piece := stream.read(wanted)):
                    break
                body.write(piece)
        except Exception as exc:  # broken chunk framing or a client gone: the server's own exception types
            # Raised here it would escape Django (the request is built outside its error handling) and
            # the server would answer a bare 500; an unreadable body is an empty one, and the
            # server closes the connection whose framing it cannot follow.
            logger.info("Chunked request body could not be read: %s", exc.__class__.__name__)
            return
        size = body.tell()
        body.seek(0)
        self.META["CONTENT_LENGTH"] = str(size)  # limit + 1 when over the limit: Django answers 413
        self._stream = LimitedStream(body, size)


class OrdersWSGIHandler(WSGIHandler):
    request_class = OrdersWSGIRequest


def get_wsgi_application() -> OrdersWSGIHandler:
    """django.core.wsgi.get_wsgi_application(), with the hardened request."""
    django.setup(set_prefix=False)
    return OrdersWSGIHandler()
