"""Waiting for a condition, always bounded."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any


class WaitTimeout(AssertionError):
    """A condition did not hold in time (an AssertionError, so pytest reports it as a failed check)."""


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 10,
    message: str = "condition",
    every: float = 0.02,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; `WaitTimeout` after `timeout`
    seconds. Exceptions of the `ignore` types count as "not yet" (a server still starting refuses)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except ignore:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(every)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def wait_for_port(port: int, *, timeout: float, alive: Callable[[], bool], what: str, host: str = "127.0.0.1") -> None:
    """Wait until something listens on `port`; fail at once if `alive()` says the process has exited."""

    def listening() -> bool:
        if not alive():
            raise RuntimeError(f"{what} exited before listening on {port}")
        return port_open(port, host)

    wait_until(listening, timeout=timeout, message=f"{what} to listen on {port}", every=0.05)
