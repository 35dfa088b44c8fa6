"""A PostgreSQL 15 cluster of the test's own (Debian's initdb and pg_ctl), and plain SQL against any."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from testsupport.processes import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(*args: str) -> list[str]:
    """Debian's server binaries refuse to run as root: run them as the `postgres` OS user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


def query(database_url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """Read the service's tables directly: plain SQL, no Django, a bounded connect (no rows for a statement
    that returns none, such as CREATE DATABASE)."""
    with psycopg.connect(database_url, connect_timeout=5, autocommit=True) as conn:
        cursor = conn.execute(sql, list(params) or None)
        return cursor.fetchall() if cursor.description else []


class PostgresServer:
    """A throw-away PostgreSQL 15 cluster (initdb + pg_ctl) on a free port, trust auth."""

    def __init__(self, *, host: str = "127.0.0.1", prefix: Sequence[str] = ()) -> None:
        """`host`: the address it listens on; `prefix`: what its commands run under (`ip netns exec NAME`)."""
        # Not pytest's tmp_path: its parents are private to root, and the server runs as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="testsupport-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.host = host
        self.prefix = list(prefix)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.log_path = self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@{self.host}:{self.port}/{database}"

    def socket_url(self, database: str = "postgres") -> str:
        """Through the Unix socket: the test's own look at the tables, whatever happens to the network."""
        return f"postgresql://postgres@/{database}?host={self.root}&port={self.port}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [*self.prefix, *as_postgres(*args)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def init(self) -> PostgresServer:
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"
        )
        if self.host != "127.0.0.1":
            # initdb trusts loopback only; `samenet` is the namespace's own /30, the veth pair's other end.
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")
        return self

    def start(self) -> None:
        # fsync off: a killed server keeps what reached the kernel, which is all a process crash tests;
        # commits are still synchronous, so nothing acknowledged is lost in shared memory.
        options = f"-p {self.port} -k {self.root} -c listen_addresses={self.host} -c fsync=off -c max_connections=200"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: the postmaster and every backend quit at once, like a crash (recovery on start)."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.socket_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop()
            except Exception:
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
