"""Waiting between tries: one backoff formula, and a sleep that an event cuts short."""

from __future__ import annotations

import asyncio
import contextlib


def backoff_seconds(failures: int, *, cap: float = 5.0) -> float:
    """0.4 s after the first failure, doubling with each one, at most `cap`: a quick retry, never a busy loop."""
    return min(0.2 * 2**failures, cap)


async def sleep_unless_set(event: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less if `event` is set meanwhile (a stop, a wake-up); whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)
    return event.is_set()
