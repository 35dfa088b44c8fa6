"""What every scenario shares: child processes, scratch databases, nats-server, /proc CPU, wrk, figures."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
# The bench-only Django side (settings with the bare route, seeding, the latency driver); it imports the
# code under test, which comes first on the children's PYTHONPATH.
SITE = Path(__file__).resolve().parent / "site"
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "bench.lua"
# The benchmarks sign their own cookies and never talk to a real auth service.
JWT_KEY = "bench-only-jwt-key-not-secret-0123456789abcdef"
SECRET_KEY = "bench-only-django-secret-key-not-secret-0123456789abcdef"  # noqa: S105
DB_PREFIX = "bench_hb_"

sys.path.insert(0, str(REPO))
from messaging.embedded import nats_server_args  # noqa: E402
from testsupport.processes import free_port  # noqa: E402


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def session_cookie(user_id: str) -> str:
    """The auth service's cookie (contract section 3): base64 JSON {"jwt": HS256 token}."""
    import jwt

    token = jwt.encode({"id": user_id, "email": f"{user_id}@bench.test", "iat": int(time.time())}, JWT_KEY, "HS256")
    return "session=" + base64.b64encode(json.dumps({"jwt": token}).encode()).decode()


def object_id(prefix: str, n: int) -> str:
    """A 24-hex id unique per (prefix, n): prefix is 1-4 hex digits naming what the id is for."""
    return f"{prefix}{n:0{24 - len(prefix)}x}"


# --- results ---------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure beside its baseline from the same run, and its target."""

    scenario: str
    database: str
    measured: str
    baseline: str = ""
    ratio: float | None = None  # how the figure compares with its baseline (charted)
    ratio_label: str = ""
    target: str = ""
    met: bool | None = None
    numbers: dict[str, Any] = field(default_factory=dict)


# --- processes -------------------------------------------------------------------------------------


class Child:
    """A subprocess in a process group of its own, logging to a file; `stop()` always ends it."""

    def __init__(self, name: str, args: Sequence[str], *, env: dict[str, str], cwd: Path, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.started = time.perf_counter()
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                list(args), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, not a shutdown."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (a graceful drain), then SIGKILL to the group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        # Nothing of its group (the server's workers with their main process) outlives the benchmark.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        return self.process.returncode


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ConnectionError):
            if value := check():
                return value
        time.sleep(every)
    raise RuntimeError(f"{what}: not within {timeout:.0f} s")


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


# --- CPU from /proc --------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def process_tree_cpu(root: int) -> float:
    """CPU seconds (utime + stime) of `root` and all its descendants, plus the children it has reaped.

    A server's worker that exits and is reaped moves its time into its parent's cutime/cstime, so the
    sum stays continuous across worker restarts.
    """
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))):
            stats[int(entry)] = fields
            parents[int(entry)] = int(fields[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    ticks = sum(int(stats[pid][11]) + int(stats[pid][12]) for pid in tree if pid in stats)
    if root in stats:
        ticks += int(stats[root][13]) + int(stats[root][14])
    return ticks / CLOCK_TICKS


def postgres_backends_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `database` (by its process title), by pid."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # "postgres: [<cluster name>:] <user> <database> 127.0.0.1(port) idle"
        parts = title.split()
        if parts[:1] == ["postgres:"] and database in parts[1:4] and (fields := _stat(int(entry))):
            out[int(entry)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


# --- databases -------------------------------------------------------------------------------------


@dataclass
class Database:
    """One database engine for a run: a migrated template, cloned into a scratch database per scenario."""

    kind: str  # "sqlite" or "postgres"
    admin_url: str
    workdir: Path
    template: str = ""
    created: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "SQLite" if self.kind == "sqlite" else "PostgreSQL"

    def url(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.workdir / (name + '.sqlite3')}"
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))

    def _admin(self):
        import psycopg

        for attempt in range(30):  # a shared server may be out of connection slots for a moment
            try:
                return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError:
                if attempt == 29:
                    raise
                time.sleep(1)
        return None

    def drop_leftovers(self) -> None:
        """Scratch databases of runs that were killed before they could drop theirs."""
        if self.kind != "postgres":
            return
        with self._admin() as conn:
            for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [DB_PREFIX + "%"]):
                pid = name.rsplit("_", 1)[-1]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    log(f"dropping {name}, left by an interrupted run")
                    self._drop(conn, name)

    @staticmethod
    def _drop(conn, name: str) -> None:
        from psycopg import sql

        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def scratch(self, purpose: str) -> str:
        """A fresh copy of the migrated template, named bench_hb_<purpose>_<pid>; its URL."""
        name = f"{DB_PREFIX}{purpose}_{os.getpid()}"
        if self.kind == "sqlite":
            target = self.workdir / f"{name}.sqlite3"
            if self.template:
                shutil.copyfile(self.workdir / f"{self.template}.sqlite3", target)
            return self.url(name)
        from psycopg import sql

        with self._admin() as conn:
            self._drop(conn, name)
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if self.template:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(self.template))
            conn.execute(statement)
        self.created.append(name)
        return self.url(name)

    def release(self, url: str) -> None:
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(urlsplit(url).path + suffix).unlink(missing_ok=True)
            return
        name = urlsplit(url).path.lstrip("/")
        with self._admin() as conn:
            self._drop(conn, name)
        with contextlib.suppress(ValueError):
            self.created.remove(name)

    def drop_all(self) -> None:
        if self.kind == "postgres":
            with self._admin() as conn:
                for name in [*self.created, self.template]:
                    if name:
                        self._drop(conn, name)
            self.created.clear()

    def query(self, url: str, sql_text: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Read the service's tables directly (replica state, counts): plain SQL, no Django."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(urlsplit(url).path, timeout=30)
            try:
                return conn.execute(sql_text.replace("%s", "?"), list(params)).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(sql_text, list(params)).fetchall()

    def version(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        with self._admin() as conn:
            return f"PostgreSQL {conn.execute('SHOW server_version').fetchone()[0]}"


# --- a run -----------------------------------------------------------------------------------------


class Run:
    """The code under test, the temp folder, and the processes and databases of one benchmark run."""

    def __init__(self, *, code: Path, workdir: Path, quick: bool, label: str = "", baseline: str = "") -> None:
        self.code = code
        self.label = label  # "" for the code under test; a baseline checkout's name otherwise
        self.workdir = workdir
        self.quick = quick
        self.baseline = baseline  # what the A/B scenarios compare `code` with: a checkout or a git revision
        self.children: list[Child] = []

    def env(self, database_url: str, nats_url: str = "nats://127.0.0.1:9", **extra: str) -> dict[str, str]:
        """The environment a deployment gives the service, pointed at scratch resources."""
        env = dict(os.environ)
        # The service as configured by its files (ticketing_orders/server.py's or gunicorn.conf.py's defaults), not by
        # this shell.
        for name in [*env]:
            if name.startswith(("GUNICORN_", "GRANIAN_", "DJANGO_", "DATABASE_", "NATS_", "PROMETHEUS_")) or name in (
                "WEB_CONCURRENCY",
                "PORT",
                "LOG_FORMAT",
            ):
                del env[name]
        data_dir = self.workdir / "data"
        data_dir.mkdir(exist_ok=True)
        env.update(
            PYTHONPATH=os.pathsep.join([str(self.code), str(SITE)]),
            JWT_KEY=JWT_KEY,
            SECRET_KEY=SECRET_KEY,
            DATA_DIR=str(data_dir),
            DATABASE_URL=database_url,
            NATS_URL=nats_url,
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> Child:
        child = Child(name, args, env=env, cwd=self.code, log_dir=self.workdir)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout: float = 20, *, min_age: float = 0) -> int | None:
        """Stop `child`, once it has lived `min_age` seconds (a process stopped while starting says nothing)."""
        time.sleep(max(0.0, min_age - (time.perf_counter() - child.started)))
        code = child.stop(timeout)
        with contextlib.suppress(ValueError):
            self.children.remove(child)
        return code

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop(timeout=10)
        self.children.clear()

    def django(self, env: dict[str, str], *args: object, timeout: float = 900) -> Any:
        """`python -m benchsite.tools ARGS` on the code under test: its JSON answer."""
        out = subprocess.run(
            [sys.executable, "-m", "benchsite.tools", *map(str, args)],
            cwd=self.code,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"benchsite.tools {args[0]} failed:\n{out.stderr[-4000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def migrate_template(self, db: Database) -> None:
        url = db.scratch("template")
        out = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=self.code,
            env=self.env(url),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{out.stderr[-4000:]}")
        db.template = urlsplit(url).path.rsplit("/", 1)[-1].removesuffix(".sqlite3")
        if db.kind == "postgres":
            db.created.remove(db.template)

    def nats_server(self, name: str) -> tuple[Child, str]:
        """A JetStream nats-server of the scenario's own: a free loopback port, a store in the temp folder."""
        port = free_port()
        # A store of its own every time: a stream left by an earlier scenario would be loaded again.
        store = Path(tempfile.mkdtemp(prefix=f"{name}-store-", dir=self.workdir))
        child = self.start(name, nats_server_args(port=port, store_dir=store), dict(os.environ))
        wait_until(lambda: child.check_alive() or port_open(port), timeout=15, what="nats-server listening")
        return child, f"nats://127.0.0.1:{port}"

    def worker(self, env: dict[str, str], name: str = "run_listeners") -> Child:
        return self.start(name, [sys.executable, "manage.py", "run_listeners"], env)

    def server_kind(self) -> str:
        """The checkout's default API server: granian where ticketing_orders/server.py exists, gunicorn before."""
        return "granian" if (self.code / "ticketing_orders" / "server.py").exists() else "gunicorn"

    def api_server(self, env: dict[str, str]) -> tuple[Child, str]:
        """The checkout's default API server as its files configure it, on a free loopback port, with the
        bare route added."""
        port = free_port()
        env = {**env, "DJANGO_SETTINGS_MODULE": "benchsite.settings"}
        if self.server_kind() == "granian":
            args = [sys.executable, "-m", "ticketing_orders.server"]
            env.update(GRANIAN_HOST="127.0.0.1", GRANIAN_PORT=str(port))
        else:
            args = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}"]
            args.append("ticketing_orders.wsgi")
            env["GUNICORN_BIND"] = f"127.0.0.1:{port}"
        child = self.start(self.server_kind(), args, env)
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            import urllib.request

            child.check_alive()
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/bench/bare", timeout=2) as answer:  # noqa: S310 (http)
                return answer.status == 200
            return False

        wait_until(ready, timeout=90, what=f"{self.server_kind()} answering", every=0.2)
        return child, base


# --- wrk -------------------------------------------------------------------------------------------


def wrk(
    url: str,
    *args: str,
    seconds: float,
    threads: int = 2,
    connections: int = 32,
    cpu_of: int | None = None,
    until: Callable[[], bool] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run wrk with bench/wrk/bench.lua; its JSON summary, plus `cpu_s` of the `cpu_of` process tree.

    wrk runs for `seconds`, or until `until()` holds (then SIGINT, on which wrk stops and reports).
    `env` adds to wrk's environment (BENCH_TRACEPARENT: a traceparent header on every request).
    """
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        *args[:1],
        str(threads),
        *args[1:],
    ]
    before = process_tree_cpu(cpu_of) if cpu_of else 0.0
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env} if env else None
    )
    deadline = time.monotonic() + seconds + 120
    while until is not None and process.poll() is None and time.monotonic() < deadline:
        if until():
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    try:
        stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    after = process_tree_cpu(cpu_of) if cpu_of else 0.0
    line = next((x for x in stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{stdout[-2000:]}\n{stderr[-2000:]}")
    result = json.loads(line.removeprefix("BENCH_JSON "))
    # Lua prints every number as a float; the counts are whole.
    result.update({k: int(v) for k, v in result.items() if k.startswith("c") or k in ("requests", "socket_errors")})
    result["cpu_s"] = after - before
    result["rate"] = result["requests"] / result["duration_s"] if result["duration_s"] else float("nan")
    return result


# --- formatting ------------------------------------------------------------------------------------


def num(value: float) -> str:
    """Three significant figures, at most two decimals."""
    if value != value:  # NaN
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), "| " + " | ".join("-" * w for w in widths) + " |", *map(line, cells[1:])])


@contextlib.contextmanager
def temp_workdir(*, keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bench-hb-"))
    try:
        yield path
    finally:
        if keep:
            log(f"logs and databases kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)
