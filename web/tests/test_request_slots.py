"""The request slots of web.handlers: a bounded number of requests in Django at once, the body read before the wait."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

import pytest
from django.conf import settings

from testsupport.testrun import call_wsgi
from testsupport.testrun import wsgi_environ as environ
from web.handlers import REFUSED_BUSY, OrdersWSGIHandler

BUSY = {"errors": [{"message": "Service unavailable"}]}


@pytest.fixture
def handler():
    """One slot, a short wait; the test takes the slot itself to play a request in flight."""
    return OrdersWSGIHandler(slots=1, wait=0.2)


def test_with_every_slot_taken_a_request_is_503_after_the_wait(handler, caplog):
    caplog.set_level(logging.INFO, logger="orders.access")
    handler.slots.acquire()
    started, refused = time.monotonic(), REFUSED_BUSY._value.get()

    status, headers, content = call_wsgi(handler, environ(QUERY_STRING="limit=5"))

    assert (status, json.loads(content)) == ("503 Service Unavailable", BUSY)
    assert (headers["Content-Type"], headers["Retry-After"]) == ("application/json", "1")
    assert time.monotonic() - started >= 0.2
    assert REFUSED_BUSY._value.get() == refused + 1
    (line,) = [r.getMessage() for r in caplog.records if r.name == "orders.access"]
    assert '"GET /api/orders?limit=5 HTTP/1.1" 503 ' in line


def test_a_request_waits_for_a_slot_and_is_served_when_one_frees(handler):
    handler.wait = 30
    handler.slots.acquire()
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(call_wsgi(handler, environ())))
    waiting.start()
    time.sleep(0.3)
    assert answers == [] and waiting.is_alive()

    handler.slots.release()
    waiting.join(10)

    # Django's own answer (not signed in), not the slots' 503.
    assert answers[0][0] == "401 Unauthorized"


def test_a_served_request_gives_its_slot_back(handler):
    for _ in range(3):
        assert call_wsgi(handler, environ())[0] == "401 Unauthorized"

    assert handler.slots.acquire(blocking=False)


def test_liveness_is_answered_with_every_slot_taken(handler):
    handler.slots.acquire()

    assert call_wsgi(handler, environ(path="/healthz"))[0] == "200 OK"


def test_the_body_is_read_before_the_wait(handler):
    """A client still sending its body holds a server thread, never a slot."""
    handler.slots.acquire()
    body = json.dumps({"ticketId": "0" * 24}).encode()
    stream = io.BytesIO(body)

    call_wsgi(handler, environ("POST", body=body, **{"wsgi.input": stream}))

    assert stream.tell() == len(body)


def test_a_body_over_the_limit_is_not_read_before_the_wait(handler):
    handler.slots.acquire()
    stream = io.BytesIO(b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1))

    call_wsgi(handler, environ("POST", **{"wsgi.input": stream, "CONTENT_LENGTH": str(len(stream.getvalue()))}))

    assert stream.tell() == 0
