"""Test harness for the event plumbing: a JetStream client, the worker in a thread or a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nats
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections
from nats.js.errors import NotFoundError

from core.ids import new_object_id
from messaging.events import Subject
from messaging.jetstream import durable_name, ensure_streams
from messaging.listener import Listener, registered_listeners
from messaging.worker import Worker

BASE_DIR = Path(settings.BASE_DIR)


def wait_until(predicate: Callable[[], Any], *, timeout: float = 10, message: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(0.02)


def run_async(coro: Coroutine) -> Any:
    """Run `coro` on a fresh loop; close the connections its ORM work opened on asgiref's thread."""

    async def main():
        try:
            return await coro
        finally:
            await sync_to_async(connections.close_all, thread_sensitive=True)()

    return asyncio.run(main())


def ticket_payload(ticket_id: str, version: int = 0, *, title: str | None = None, price: float = 20) -> dict:
    return {
        "id": ticket_id,
        "version": version,
        "title": title or f"concert v{version}",
        "price": price,
        "userId": "tickets-owner",
    }


class JetStream:
    """A nats-py client on a loop of its own, callable from synchronous tests."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-jetstream", daemon=True)
        self.thread.start()

        async def quiet(exc: Exception) -> None:
            """The tests stop the server on purpose: no traceback for each reconnect attempt."""

        self.client = self.call(
            nats.connect(
                servers=[url],
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.2,
                connect_timeout=2,
                name="tests",
                error_cb=quiet,
            )
        )
        self.js = self.client.jetstream()

    def call(self, coro: Coroutine, *, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        # process_message/relay_once called through `call` did their ORM work on asgiref's thread.
        self.call(sync_to_async(connections.close_all, thread_sensitive=True)())
        if not self.client.is_closed:
            self.call(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def publish(self, subject: str, payload: dict | bytes, *, msg_id: str | None = None):
        """Publish as another service would: JSON with a Nats-Msg-Id header. Returns the PubAck."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Nats-Msg-Id": msg_id or new_object_id()}
        return self.call(self.js.publish(subject, data, headers=headers, timeout=5))

    def ensure_streams(self) -> dict:
        """What the worker does first: a stream capturing the six subjects (so publishing works)."""
        return self.call(ensure_streams(self.js))

    def publish_many(self, events: list[tuple[str, dict | bytes, str | None]]) -> list:
        """Publish a burst concurrently ((subject, payload, msg id or None) each); the PubAcks in order."""

        async def burst():
            return await asyncio.gather(
                *(
                    self.js.publish(
                        subject,
                        payload if isinstance(payload, bytes) else json.dumps(payload).encode(),
                        headers={"Nats-Msg-Id": msg_id or new_object_id()},
                        timeout=10,
                    )
                    for subject, payload, msg_id in events
                )
            )

        return self.call(burst())

    def stream_name(self, subject: str) -> str:
        return self.call(self.js.find_stream_name_by_subject(subject))

    def stream_names(self) -> list[str]:
        return self.call(self.js.streams_info())

    def stream_info(self, name: str):
        return self.call(self.js.stream_info(name))

    def messages(self, subject: str) -> list:
        """Every message on the stream for `subject`, oldest first (RawStreamMsg: seq, data, headers)."""

        async def collect():
            stream = await self.js.find_stream_name_by_subject(subject)
            found, seq = [], 1
            while True:
                try:
                    msg = await self.js.get_msg(stream, seq=seq, subject=subject, next=True)
                except NotFoundError:
                    return found
                found.append(msg)
                seq = msg.seq + 1

        return self.call(collect())

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

    def wait_settled(self, subject: Subject | str, *, timeout: float = 10):
        """Wait until the subject's consumer has delivered every message and holds no unacked one."""

        def settled():
            info = self.consumer_info(subject)
            return info if info.num_pending == 0 and info.num_ack_pending == 0 else None

        return wait_until(settled, timeout=timeout, message=f"{subject} consumer to ack everything")


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


def test_database_url() -> str:
    """DATABASE_URL for a subprocess, pointing at the database this test run uses."""
    db = connection.settings_dict
    # Django's own engines or their django-prometheus wrappers.
    if db["ENGINE"].endswith(".sqlite3"):
        return f"sqlite:///{db['NAME']}"
    if db["ENGINE"].endswith(".postgresql"):
        user = quote(db.get("USER") or "", safe="")
        password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}{port}/{db['NAME']}"
    raise NotImplementedError(f"no DATABASE_URL for {db['ENGINE']}")


test_database_url.__test__ = False  # a helper, not a test

LOG_LINE = re.compile(r" messaging\.listener (?:\[\S*\] )?(\w+) (\S+) seq=(\d+) ")


class WorkerProcess:
    """`python manage.py run_listeners` as a subprocess on the test database, logging to a file."""

    def __init__(self, *, nats_url: str, log_path: Path, **env: str) -> None:
        self.nats_url = nats_url
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "ticketing_orders.settings_test",
            "NATS_URL": self.nats_url,
            "DATABASE_URL": test_database_url(),
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "run_listeners"], cwd=BASE_DIR, env=env, stdout=log, stderr=log
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, *, timeout: float = 20) -> None:
        def seen():
            if text in self.log():
                return True
            assert self.process.poll() is None, f"run_listeners exited early:\n{self.log()[-3000:]}"
            return False

        wait_until(seen, timeout=timeout, message=f"{text!r} in the worker's log")

    def outcomes(self) -> list[tuple[str, str, int]]:
        """(result, subject, stream sequence) of every message the log says was settled."""
        return [(m[1], m[2], int(m[3])) for m in LOG_LINE.finditer(self.log())]

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, *, timeout: float = 20) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
