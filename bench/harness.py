"""What the scenarios share: a run's code and processes, scratch databases, wrk, figures."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from testsupport import http, postgres, service
from testsupport.nats import NatsServer
from testsupport.processes import Child, Processes, process_cpu, process_tree_cpu

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
# The benchmarks sign their own cookies and never talk to a real auth service.
KEYS = {"jwt_key": "bench-only-jwt-key-not-secret-0123456789abcdef", "secret_key": "bench-only-django-not-secret"}
PREFIX = "bench_hb_"


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def cookie(user_id: str) -> str:
    return http.session_cookie(user_id, jwt_key=KEYS["jwt_key"], email=f"{user_id}@bench.test")


def object_id(prefix: str, n: int) -> str:
    """A 24-hex id unique per (prefix, n): prefix is 1-4 hex digits naming what the id is for."""
    return f"{prefix}{n:0{24 - len(prefix)}x}"


def post_lines(tickets: str, users: str, count: int) -> Iterator[str]:
    """wrk's POST lines (bench.lua): each ticket once, each by a buyer of its own."""
    return (f"{object_id(tickets, n)}\t{cookie(object_id(users, n))}" for n in range(count))


def lines_file(path: Path, lines: Iterable[str], count: int | None = None) -> str:
    path.write_text("\n".join(line for _, line in zip(range(count or 10**9), lines, strict=False)) + "\n")
    return str(path)


def num(value: float) -> str:
    """Three significant figures, at most two decimals."""
    if value != value:  # NaN
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


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


@contextlib.contextmanager
def checkout(spec: str, workdir: Path) -> Iterator[Path]:
    """A checkout's directory, or a detached git worktree of the revision `spec`, removed after."""
    if Path(spec).is_dir():
        yield Path(spec).resolve()
        return
    path = workdir / f"checkout-{spec.replace('/', '_')}"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), spec], cwd=REPO, check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO, capture_output=True)


def postgres_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `database` (found by its process title), by pid."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            # "postgres: [<cluster name>:] <user> <database> 127.0.0.1(port) idle"
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
            if title[:1] == ["postgres:"] and database in title[1:4]:
                out[int(pid)] = process_cpu(int(pid))
    return out


@dataclass
class Database:
    """One engine of a run: a migrated template, copied into a scratch database bench_hb_<purpose>_<pid> per use."""

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
            return f"sqlite:///{self.workdir / name}.sqlite3"
        return urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{name}"))

    def _admin(self, *statements: str) -> list[list[tuple] | None]:
        import psycopg

        for attempt in range(30):  # a shared server may be out of connection slots for a moment
            try:
                with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
                    return [(c := conn.execute(s)).description and c.fetchall() for s in statements]  # type: ignore[arg-type]
            except psycopg.OperationalError:
                if attempt == 29:
                    raise
                time.sleep(1)
        return []

    def drop(self, names: list[str]) -> None:
        for name in names:
            for suffix in ("", "-wal", "-shm"):
                (self.workdir / f"{name}.sqlite3{suffix}").unlink(missing_ok=True)
        if self.kind == "postgres" and names:
            self._admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names))
        self.created = [n for n in self.created if n not in names]

    def drop_leftovers(self) -> None:
        """Scratch databases of runs killed before they could drop theirs (their pid is gone)."""
        if self.kind == "postgres":
            (rows,) = self._admin("SELECT datname FROM pg_database WHERE datname LIKE 'bench_hb_%'")
            pid = [(name, name.rsplit("_", 1)[-1]) for (name,) in rows or []]
            self.drop([name for name, p in pid if p.isdigit() and not Path(f"/proc/{p}").exists()])

    def scratch(self, purpose: str) -> str:
        """A fresh copy of the migrated template (an empty database before there is one): its URL."""
        name = f"{PREFIX}{purpose}_{os.getpid()}"
        self.drop([name])
        if self.kind == "postgres":
            self._admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{self.template}"' if self.template else ""))
        elif self.template:
            shutil.copyfile(self.workdir / f"{self.template}.sqlite3", self.workdir / f"{name}.sqlite3")
        self.created.append(name)
        return self.url(name)

    def query(self, url: str, sql: str) -> list[tuple]:
        """Read the service's tables directly (replica state, counts): plain SQL, no Django."""
        if self.kind == "postgres":
            return postgres.query(url, sql)
        with contextlib.closing(sqlite3.connect(urlsplit(url).path, timeout=30)) as conn:
            return conn.execute(sql).fetchall()

    def version(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        return f"PostgreSQL {self._admin('SHOW server_version')[0][0][0]}"


class Run:
    """The code under test (or a baseline checkout: `label`), the temp folder, and the processes of a scenario."""

    def __init__(self, code: Path, workdir: Path, quick: bool, label: str = "", ab: Callable | None = None) -> None:
        self.code, self.workdir, self.quick, self.label = code, workdir, quick, label
        self.ab = ab  # the A/B scenarios' baseline: ab(its default revision) -> (revision, checkout)
        self.processes = Processes(workdir, cwd=code)
        # The checkout's default API server: granian where ticketing_orders/server.py exists, gunicorn before.
        self.server = "granian" if (code / "ticketing_orders" / "server.py").exists() else "gunicorn"

    def env(self, database_url: str, nats_url: str = "nats://127.0.0.1:9", **extra: str) -> dict[str, str]:
        """The environment a deployment gives the service, pointed at scratch resources, the bench site on its path."""
        (data := self.workdir / "data").mkdir(exist_ok=True)
        extra = {"PYTHONPATH": f"{self.code}{os.pathsep}{HERE / 'site'}", "LOG_LEVEL": "WARNING", **extra}
        return service.service_env(database_url=database_url, nats_url=nats_url, data_dir=data, **KEYS, **extra)

    def django(self, env: dict[str, str], command: str, timeout: float = 1800, **args: Any) -> Any:
        """`python -m benchsite.tools COMMAND JSON` on the code: its JSON answer."""
        command_line = [sys.executable, "-m", "benchsite.tools", command, json.dumps(args)]
        out = subprocess.run(command_line, cwd=self.code, env=env, capture_output=True, text=True, timeout=timeout)
        if out.returncode:
            raise RuntimeError(f"benchsite.tools {command} failed:\n{out.stderr[-4000:]}")
        return json.loads(out.stdout.splitlines()[-1])

    def migrate_template(self, db: Database) -> None:
        service.migrate(self.env(db.scratch("template")), cwd=self.code)
        db.template = db.created.pop()

    def nats(self, name: str) -> str:
        """A JetStream nats-server of the scenario's own, its store in the temp folder: its URL."""
        server = NatsServer(self.workdir, name=name).start()
        self.processes.cleanups.append(server.stop)
        return server.url

    def worker(self, env: dict[str, str], name: str = "run_listeners") -> Child:
        return service.start_worker(self.processes, name, env, wait=False)

    def api(self, env: dict[str, str]) -> tuple[Child, str]:
        """The default server as the checkout's files configure it, with the bare route (benchsite.settings)."""
        env = {**env, "DJANGO_SETTINGS_MODULE": "benchsite.settings"}
        api = service.start_api(self.processes, self.server, env, server=self.server, ready_path="/bench/bare")
        return api.child, api.url

    def stop(self, child: Child, *, min_age: float = 0) -> int | None:
        """Stop `child` once it has lived `min_age` seconds (one stopped while starting says nothing)."""
        time.sleep(max(0.0, min_age - (time.perf_counter() - child.started)))
        return self.processes.stop(child)


def wrk(
    url: str,
    *args: str,
    seconds: float,
    threads: int = 2,
    connections: int = 32,
    cpu_of: int | None = None,
    pg: str | None = None,
    until: Callable[[], bool] | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """wrk with bench/wrk/bench.lua for `seconds`, or until `until()` holds (then SIGINT: wrk stops and reports):
    its JSON summary, `rate`, `cpu_s` of the `cpu_of` process tree and `pg_cpu_s` of database `pg`'s backends."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    script = str(HERE / "wrk" / "bench.lua")
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    command += ["-s", script, url, "--", args[0], str(threads), *args[1:]]

    def cpu() -> tuple[float, dict[int, float]]:
        return process_tree_cpu(cpu_of) if cpu_of else 0.0, postgres_cpu(pg) if pg else {}

    before = cpu()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    deadline = time.monotonic() + seconds + 120
    while until is not None and process.poll() is None and time.monotonic() < deadline and not until():
        time.sleep(0.02)
    if until is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    after = cpu()
    line = next((x for x in stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{stdout[-2000:]}\n{stderr[-2000:]}")
    result = json.loads(line.removeprefix("BENCH_JSON "))
    # Lua prints every number as a float; the counts are whole.
    result.update({k: int(v) for k, v in result.items() if k.startswith("c") or k in ("requests", "socket_errors")})
    result["cpu_s"] = after[0] - before[0]
    result["pg_cpu_s"] = sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items())
    result["rate"] = result["requests"] / result["duration_s"] if result["duration_s"] else float("nan")
    return result
