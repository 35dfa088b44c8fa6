"""Connecting to a NATS that is not there yet: plain words, growing waits, and no log flood."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time

import pytest

from messaging import jetstream
from testsupport.nats import NatsServer
from testsupport.processes import free_port


def test_the_worker_says_where_it_tries_and_waits_longer_each_time(tmp_path, caplog):
    server = NatsServer(tmp_path)
    # The server comes up after about 3.5 s: tries at 0, 1, 3 s fail, the one at 7 s connects.
    starter = threading.Timer(3.5, server.start)
    starter.start()
    caplog.set_level(logging.DEBUG, logger="messaging.jetstream")
    try:

        async def go():
            client = await jetstream.connect(name="test", url=server.url)
            assert client.is_connected
            await client.close()

        began = time.monotonic()
        asyncio.run(go())
        took = time.monotonic() - began
    finally:
        starter.join()
        server.stop()

    said = [r.getMessage() for r in caplog.records if r.name == "messaging.jetstream"]
    retries = [m for m in said if m.startswith("cannot reach NATS")]
    assert retries, said
    waits = [float(re.search(r"retrying in ([\d.]+)s$", m).group(1)) for m in retries]
    assert waits == [1, 2, 4][: len(waits)] and len(waits) >= 2, retries
    for message in retries:
        assert message.startswith(f"cannot reach NATS at {server.url} (NATS_URL): ")
        assert "Connect call failed" in message  # the cause, in the same line
    assert said[:-1] == retries, "one line per try, nothing else"
    assert said[-1] == f"nats: connected to {server.url.removeprefix('nats://')}"
    assert 3.5 <= took < 15


def test_a_command_gives_up_after_three_tries(caplog):
    url = f"nats://127.0.0.1:{free_port()}"

    with pytest.raises(Exception, match="no servers available"):
        asyncio.run(jetstream.connect(name="test", url=url, retry_forever=False))

    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cannot reach NATS")]
    assert len(retries) == 2  # the third failure is raised, not retried
