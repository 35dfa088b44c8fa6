"""What the benchmarks share: child processes that always go away, a nats-server, scratch databases,
an asyncio loop callable from synchronous code, percentiles and Markdown tables.

Imported by the scripts next to it (`python bench/<script>.py` puts bench/ on sys.path); it does not
import Django, so it can run before the scripts have chosen their DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
# The benchmarks sign their own cookies and never talk to a real auth service.
JWT_KEY = "bench-only-jwt-key-not-secret-0123456789abcdef"
SECRET_KEY = "bench-only-django-secret-key-not-secret-0123456789abcdef"  # noqa: S105


def add_repo_to_path() -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


add_repo_to_path()
from messaging.embedded import free_port, nats_server_args, nats_server_binary  # noqa: E402


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what or 'process'} exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what or 'process'} did not listen on port {port} within {timeout:.0f} s")


def stop_on_sigterm() -> None:
    """SIGTERM/SIGHUP end the run like Ctrl-C does, so every `finally` cleans up."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


class Child:
    """A subprocess in a process group of its own, logging to a file; `stop()` always ends it.

    Its own group: Ctrl-C reaches only the benchmark, which then stops its children in order
    (the worker before the nats-server it drains to), and `stop()` can end the whole group
    (gunicorn's workers with their master).
    """

    def __init__(self, name: str, args: Sequence[str], *, env: dict[str, str], log_path: Path, cwd: Path = REPO):
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(args), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM (a graceful drain), then SIGKILL to the process group after `timeout` seconds."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"# {self.name} did not stop within {timeout:.0f} s: killing it", file=sys.stderr)
        # Whatever the leader did, nothing of its group (our own session) outlives the benchmark.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        return self.process.returncode


def nats_server_version() -> str:
    try:
        out = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return out.stdout.strip() or out.stderr.strip()


def start_nats_server(workdir: Path) -> tuple[Child, str]:
    """A JetStream nats-server on a free loopback port, its store in `workdir`; (child, url)."""
    store = workdir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    child = Child(
        "nats-server",
        nats_server_args(port=port, store_dir=store),
        env=dict(os.environ),
        log_path=workdir / "nats-server.log",
    )
    try:
        wait_for_port(port, timeout=10, process=child.process, what="nats-server")
    except BaseException:
        child.stop()
        raise
    return child, f"nats://127.0.0.1:{port}"


@contextlib.contextmanager
def scratch_database(admin_url: str | None, *, name: str, workdir: Path) -> Iterator[str]:
    """The DATABASE_URL to benchmark against, created for this run and removed after it.

    No URL: a SQLite file in `workdir`. A postgres:// URL: a database `name` created through that
    server (the URL's own database is only used to issue CREATE/DROP DATABASE) and dropped at the end.
    """
    if not admin_url:
        yield f"sqlite:///{workdir / 'orders.sqlite3'}"
        return
    import psycopg
    from psycopg import sql

    parts = urlsplit(admin_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"--database-url must be a postgres:// URL, got {parts.scheme}://")
    if not name.startswith("bench_"):
        raise SystemExit("the scratch database's name must start with bench_ (it is dropped at the end)")
    ident = sql.Identifier(name)

    def drop(conn) -> None:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            print(f"# dropping {name}, left over from an interrupted benchmark run", file=sys.stderr)
            drop(conn)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            drop(conn)


def database_description(url: str) -> str:
    if url.startswith("sqlite"):
        return f"SQLite {sqlite3.sqlite_version} (WAL, a temp file)"
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error as exc:
        return f"PostgreSQL (version unknown: {exc})"
    host = urlsplit(url).hostname
    return f"PostgreSQL {version} ({host}, scratch database {urlsplit(url).path.lstrip('/')})"


def service_env(*, data_dir: Path, database_url: str, nats_url: str = "nats://127.0.0.1:9", **extra: str) -> dict:
    """The environment of the service's processes (and of the benchmark's own Django)."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="ticketing_orders.settings",
        JWT_KEY=JWT_KEY,
        SECRET_KEY=SECRET_KEY,
        DATA_DIR=str(data_dir),
        DATABASE_URL=database_url,
        NATS_URL=nats_url,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def machine_lines() -> list[str]:
    cpus = os.cpu_count()
    with contextlib.suppress(AttributeError):
        cpus = f"{len(os.sched_getaffinity(0))} usable of {cpus}"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"machine: {platform.machine()}, {cpus} CPUs, load average {load} at start",
        f"python: {platform.python_version()} ({sys.executable})",
    ]


class LoopThread:
    """An asyncio loop on a daemon thread: `call(coro)` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-loop", daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine, *, timeout: float = 30) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


def summary(values_ms: Sequence[float]) -> dict[str, float]:
    """n, p50, p90, p99, max (ms); percentiles interpolated between the closest ranks."""
    values = sorted(values_ms)
    if not values:
        return {"n": 0, "p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan")}
    cuts = values * 99 if len(values) == 1 else statistics.quantiles(values, n=100, method="inclusive")
    return {"n": len(values), "p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": values[-1]}


def ms(value: float) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def ratio(value: float, base: float) -> str:
    if not base or value != value or base != base:
        return "-"
    return f"{value / base:.2f}x" if value / base < 10 else f"{value / base:.0f}x"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), "| " + " | ".join("-" * w for w in widths) + " |", *map(line, cells[1:])])
