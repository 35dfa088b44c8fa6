"""The worker's loops: each runs its database work on a thread of its own."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import OperationalError

from messaging.listener import run_db
from messaging.observability import HEALTH
from messaging.worker import Worker
from testsupport.testrun import run_async
from tickets_replica.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)


def test_one_loop_stuck_in_a_database_call_does_not_hold_up_another():
    stuck = threading.Event()
    release = threading.Event()

    def hang() -> None:
        stuck.set()
        release.wait(30)  # what a query on a dead link does until its timeouts end it

    async def main() -> tuple[int, set[str]]:
        worker = Worker([])
        names: set[str] = set()

        async def hung_loop() -> None:
            await run_db(hang)

        async def other_loop() -> int:
            await asyncio.get_running_loop().run_in_executor(None, stuck.wait, 10)
            names.add(await run_db(lambda: threading.current_thread().name))
            return await run_db(Ticket.objects.count)

        hung = worker._loop("hung", hung_loop())
        other = worker._loop("other", other_loop())
        try:
            counted = await asyncio.wait_for(other, timeout=10)  # while `hung` still waits
            assert not hung.done()
        finally:
            release.set()
            await hung
            await worker._close_database_threads()
        return counted, names

    counted, names = run_async(main())
    assert counted == 0
    assert len(names) == 1 and next(iter(names)).startswith("db-other")


def test_a_database_call_that_fails_is_listed_in_healthz_until_one_succeeds():
    def unreachable() -> None:
        raise OperationalError("connection timeout expired")

    async def main() -> None:
        with pytest.raises(OperationalError):
            await run_db(unreachable)
        problems = HEALTH.check()[1]
        assert problems["database"].startswith("OperationalError: connection timeout expired (failing for ")
        await run_db(Ticket.objects.count)
        assert "database" not in HEALTH.check()[1]

    run_async(main())
