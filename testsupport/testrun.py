"""Support that needs the test run's Django settings: the service's environment with the run's keys, the
test database's URL for a subprocess, the worker in a thread or the environment of a `run_listeners`, and a
JetStream client callable from synchronous tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any
from urllib.parse import quote

import nats
import nats.errors
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections
from nats.js.errors import NotFoundError

from core.ids import new_object_id
from messaging.events import Subject
from messaging.jetstream import durable_name, ensure_consumer, ensure_streams, nats_servers
from messaging.listener import Listener, registered_listeners
from messaging.worker import Worker
from testsupport.service import service_env
from testsupport.waiting import wait_until


def database_under_test_url() -> str:
    """DATABASE_URL for a subprocess, pointing at the database this test run uses (by vendor, so a
    wrapping backend such as an instrumented one is followed too)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        user = quote(db.get("USER") or "", safe="")
        password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}{port}/{db['NAME']}"
    raise NotImplementedError(f"no DATABASE_URL for {connection.vendor}")


def wsgi_environ(method: str = "GET", path: str = "/api/orders", body: bytes = b"", **extra: Any) -> dict:
    """A WSGI environ as a server hands one to the application: a JSON `body` with its Content-Length."""
    from django.test import RequestFactory

    return {
        **RequestFactory()._base_environ(),
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **extra,
    }


def call_wsgi(application: Any, environ: dict) -> tuple[str, dict[str, str], bytes]:
    """One request through a WSGI application in this thread (status, headers, body), on the test's database
    connection: the handler's signals would close it, so they are held off as Django's test client does."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    started: list[tuple[str, dict[str, str]]] = []
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        answer = application(environ, lambda status, headers, *args: started.append((status, dict(headers))))
        content = b"".join(answer)
        getattr(answer, "close", lambda: None)()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return *started[0], content


def service_env_for_tests(**kwargs: Any) -> dict[str, str]:
    """`testsupport.service.service_env` with this test run's JWT_KEY and SECRET_KEY, so the service under
    test accepts the cookies the test signs."""
    return service_env(jwt_key=settings.JWT_KEY, secret_key=settings.SECRET_KEY, **kwargs)


def ticket_payload(ticket_id: str, version: int = 0, *, title: str | None = None, price: float = 20) -> dict:
    """A ticket:created / ticket:updated payload as the tickets service publishes it."""
    return {
        "id": ticket_id,
        "version": version,
        "title": title or f"concert v{version}",
        "price": price,
        "userId": "tickets-owner",
    }


def run_async(coro: Coroutine) -> Any:
    """Run `coro` on a fresh loop; close the connections its ORM work opened on asgiref's thread."""

    async def main():
        try:
            return await coro
        finally:
            await sync_to_async(connections.close_all, thread_sensitive=True)()

    return asyncio.run(main())


def encoded(payload: dict | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


class JetStream:
    """A nats-py client of every server of `url` (comma-separated) on a loop of its own, callable from
    synchronous tests; it reconnects forever, quietly (the tests stop servers on purpose)."""

    def __init__(self, url: str, *, name: str = "tests") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"{name}-jetstream", daemon=True)
        self.thread.start()

        async def quiet(exc: Exception) -> None:
            """No traceback for each reconnect attempt."""

        self.client = self.call(
            nats.connect(
                servers=nats_servers(url),
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.2,
                connect_timeout=2,
                name=name,
                error_cb=quiet,
            )
        )
        self.js = self.client.jetstream()

    def call(self, coro: Coroutine, *, timeout: float = 30) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        # process_message/relay_once called through `call` did their ORM work on asgiref's thread.
        with contextlib.suppress(Exception):
            self.call(sync_to_async(connections.close_all, thread_sensitive=True)(), timeout=10)
        with contextlib.suppress(Exception):
            if not self.client.is_closed:
                self.call(self.client.close(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()

    def publish(self, subject: str, payload: dict | bytes, *, msg_id: str | None = None):
        """Publish as another service would: JSON with a Nats-Msg-Id header. Returns the PubAck."""
        headers = {"Nats-Msg-Id": msg_id or new_object_id()}
        return self.call(self.js.publish(subject, encoded(payload), headers=headers, timeout=5))

    def publish_all(
        self,
        events: Sequence[tuple[str, dict | bytes, str | None]],
        *,
        window: int = 64,
        give_up_after: float = 120,
        counts: dict[str, int] | None = None,
    ) -> dict[str, int]:
        """Publish (subject, payload, msg id or None) concurrently with a bounded window, re-sending a failed
        publish with the same Nats-Msg-Id (the server drops a copy that did land) until it is acknowledged.

        Returns (and keeps updating `counts`, for a watcher on another thread) {"published": n,
        "retries": n, "duplicates": n, "acks": [PubAck in the order of `events`]}.
        """
        counts = counts if counts is not None else {}
        for key in ("published", "retries", "duplicates"):
            counts.setdefault(key, 0)
        acks: list[Any] = [None] * len(events)

        async def one(index: int, subject: str, payload: dict | bytes, msg_id: str | None, gate) -> None:
            data, headers = encoded(payload), {"Nats-Msg-Id": msg_id or new_object_id()}
            deadline = time.monotonic() + give_up_after
            async with gate:
                while True:
                    try:
                        ack = await self.js.publish(subject, data, headers=headers, timeout=2)
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        counts["retries"] += 1
                        await asyncio.sleep(0.2)
                        continue
                    acks[index] = ack
                    counts["published"] += 1
                    counts["duplicates"] += bool(ack.duplicate)
                    return

        async def burst() -> None:
            gate = asyncio.Semaphore(window)
            await asyncio.gather(*(one(i, *event, gate) for i, event in enumerate(events)))

        self.call(burst(), timeout=give_up_after + 600)
        counts["acks"] = acks
        return counts

    def ensure_streams(self) -> dict:
        """What the worker does first: a stream capturing the six subjects (so publishing works)."""
        return self.call(ensure_streams(self.js))

    def stream_name(self, subject: str) -> str:
        return self.call(self.js.find_stream_name_by_subject(subject))

    def stream_names(self) -> list[str]:
        return self.call(self.js.streams_info())

    def stream_info(self, name: str):
        return self.call(self.js.stream_info(name))

    def messages(self, subject: str, *, stream: str | None = None) -> list:
        """Every message on the stream for `subject`, oldest first (RawStreamMsg: seq, data, headers)."""

        async def collect():
            name = stream or await self.js.find_stream_name_by_subject(subject)
            found, seq = [], 1
            while True:
                try:
                    msg = await self.js.get_msg(name, seq=seq, subject=subject, next=True)
                except NotFoundError:
                    return found
                found.append(msg)
                seq = msg.seq + 1

        return self.call(collect(), timeout=300)

    def payloads(self, subject: str) -> list[dict]:
        return [json.loads(m.data) for m in self.messages(subject)]

    def consumer_info(self, subject: Subject | str):
        subject = Subject(subject)
        return self.call(self.js.consumer_info(self.stream_name(subject.value), durable_name(subject)))

    def consumer_names(self) -> set[str]:
        async def names():
            found = set()
            for info in await self.js.streams_info():
                found |= {c.name for c in await self.js.consumers_info(info.config.name)}
            return found

        return self.call(names())

    def delete_streams(self) -> None:
        """Delete every stream (and so every consumer): a clean server for the next test."""

        async def delete():
            for info in await self.js.streams_info():
                await self.js.delete_stream(info.config.name)

        self.call(delete())

    def wait_settled(self, subject: Subject | str, *, timeout: float = 10):
        """Wait until the subject's consumer has delivered every message and holds no unacked one."""

        def settled():
            info = self.consumer_info(subject)
            return info if info.num_pending == 0 and info.num_ack_pending == 0 else None

        return wait_until(settled, timeout=timeout, message=f"{subject} consumer to ack everything")


class PullConsumer:
    """A subject's durable pull consumer, made and bound as the worker does, for a test to fetch from and then
    hand the messages to `process_message` / `process_batch` itself."""

    def __init__(self, jetstream: JetStream, subject: Subject | str) -> None:
        self.jetstream = jetstream
        self.subject = Subject(subject)
        stream = jetstream.stream_name(self.subject.value)
        durable = jetstream.call(ensure_consumer(jetstream.js, stream=stream, subject=self.subject))
        self.subscription = jetstream.call(jetstream.js.pull_subscribe_bind(durable=durable, stream=stream))

    def fetch(self, count: int, *, timeout: float = 5) -> list:
        """Exactly `count` messages, over as many fetches as it takes (nats.errors.TimeoutError if they do not come)."""
        messages: list = []
        while len(messages) < count:
            messages += self.jetstream.call(self.subscription.fetch(batch=count - len(messages), timeout=timeout))
        return messages

    def next(self, *, timeout: float = 5):
        [msg] = self.fetch(1, timeout=timeout)
        return msg

    def nothing_to_fetch(self, *, timeout: float = 0.5) -> bool:
        try:
            self.jetstream.call(self.subscription.fetch(batch=1, timeout=timeout))
        except nats.errors.TimeoutError:
            return True
        return False

    def info(self):
        return self.jetstream.consumer_info(self.subject)

    def settled(self) -> bool:
        """Every message delivered and acknowledged (or terminated)."""
        info = self.info()
        return info.num_ack_pending == 0 and info.num_pending == 0


class WorkerThread:
    """`messaging.worker.Worker` running on its own asyncio loop in a background thread."""

    def __init__(self, listeners: list[Listener] | None = None) -> None:
        self.listeners = listeners if listeners is not None else list(registered_listeners().values())
        self.worker: Worker | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-worker", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.worker = Worker(self.listeners)
            try:
                await self.worker.run()
            finally:
                # The ORM ran on asgiref's shared thread: leave no connection open behind the test.
                await sync_to_async(connections.close_all, thread_sensitive=True)()

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc
            raise

    def start(self, jetstream: JetStream | None = None, *, timeout: float = 10) -> WorkerThread:
        """Start, and (given a client) wait until every listener's durable consumer exists."""
        self.thread.start()
        wait_until(lambda: self.worker is not None, timeout=timeout, message="the worker to start")
        if jetstream is not None:
            wanted = {durable_name(listener.subject) for listener in self.listeners}

            def ready():
                assert self.thread.is_alive(), f"worker died: {self.error!r}"
                return wanted <= jetstream.consumer_names()

            wait_until(ready, timeout=timeout, message=f"consumers {sorted(wanted)}")
        return self

    def stop(self, *, timeout: float = 15) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.worker.request_stop)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"
        assert self.error is None, f"the worker failed: {self.error!r}"


def worker_env(nats_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `run_listeners` started by a test (`testsupport.service.start_worker`): the test
    settings (quick retries) on the test database, pointed at the test's nats-server; `extra` on top."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ticketing_orders.settings_test",
        "NATS_URL": nats_url,
        "DATABASE_URL": database_under_test_url(),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
