"""Django's WSGI and ASGI handlers, with requests that cannot be crashed by a Content-Type charset."""

from __future__ import annotations

import codecs

import django
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.utils.http import parse_header_parameters

# Text codecs whose strict decoding fails with a bare UnicodeError, which Django's
# `except UnicodeDecodeError` around query-string decoding does not catch.
CODECS_RAISING_BARE_UNICODE_ERROR = frozenset({"idna", "punycode", "undefined"})


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


class OrdersWSGIRequest(UsableCharsetMixin, WSGIRequest):
    pass


class OrdersASGIRequest(UsableCharsetMixin, ASGIRequest):
    pass


class OrdersWSGIHandler(WSGIHandler):
    request_class = OrdersWSGIRequest


class OrdersASGIHandler(ASGIHandler):
    request_class = OrdersASGIRequest


def get_wsgi_application() -> OrdersWSGIHandler:
    """django.core.wsgi.get_wsgi_application(), with the hardened request."""
    django.setup(set_prefix=False)
    return OrdersWSGIHandler()


def get_asgi_application() -> OrdersASGIHandler:
    """django.core.asgi.get_asgi_application(), with the hardened request."""
    django.setup(set_prefix=False)
    return OrdersASGIHandler()
