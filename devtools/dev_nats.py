"""`make run`'s nats-server: stopped only after the event worker has drained and exited."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from messaging.embedded import nats_server_args

# honcho sends SIGKILL 5 s after SIGTERM: wait for the worker and nats-server well within that.
WORKER_WAIT_SECONDS = 3.0
SERVER_WAIT_SECONDS = 1.5


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_worker(pidfile: Path, timeout: float) -> None:
    """Wait until the process named in `pidfile` has exited (or `timeout` has passed)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> int:
    port = int(os.environ.get("DEV_NATS_PORT", "4322"))
    data_dir = Path(os.environ.get("DATA_DIR", "data"))
    pidfile = Path(os.environ.get("DEV_WORKER_PIDFILE", data_dir / "worker.pid"))
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # Its own session: honcho signals this process group on Ctrl-C, and nats-server must outlive
    # the worker, which still acknowledges and publishes while it drains.
    server = subprocess.Popen(nats_server_args(port=port, store_dir=data_dir / "nats"), start_new_session=True)
    try:
        while not stop_requested and server.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=0.2)
        if server.returncode is not None:
            return server.returncode
        wait_for_worker(pidfile, WORKER_WAIT_SECONDS)
        # Nothing reads it after this wait, and a stopped `make run` leaves nothing behind.
        pidfile.unlink(missing_ok=True)
        server.terminate()
        try:
            server.wait(timeout=SERVER_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        return 0
    finally:
        if server.poll() is None:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
