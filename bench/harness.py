"""What the scenarios share: the code under test and its processes, scratch databases, the server on one, wrk,
and the figures."""

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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench.site.benchsite import object_id
from testsupport import http, postgres, service
from testsupport.nats import NatsServer
from testsupport.processes import Child, Processes, process_cpu, process_tree_cpu
from testsupport.waiting import WaitTimeout, port_open, wait_until

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
# The benchmarks sign their own cookies and never talk to a real auth service.
KEYS = {"jwt_key": "bench-only-jwt-key-not-secret-0123456789abcdef", "secret_key": "bench-only-django-not-secret"}
USER = object_id("6a", 1)  # the user whose orders the HTTP scenarios read
# What --variant changes for this checkout's server and requests; a baseline's run without it.
VARIANTS = {
    "traceparent": "every request carries a sampled traceparent, as behind an instrumented ingress",
    "otlp": "the same, and the server exports every trace over OTLP to a receiver in the bench process",
    "new-key": "every POST carries an Idempotency-Key of its own",
    "replay": "every POST is one request again and again under one Idempotency-Key: the first creates",
}
TRACEPARENT = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def cookie(user_id: str) -> str:
    return http.session_cookie(user_id, jwt_key=KEYS["jwt_key"], email=f"{user_id}@bench.test")


def lines_file(path: Path, lines: Iterable[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
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

    def admin(self, *statements: str) -> list[list[tuple]]:
        """Each statement's rows, retried while a shared server is out of connection slots for a moment."""

        def run() -> list[list[tuple]]:
            return [postgres.query(self.admin_url, statement) for statement in statements]

        return wait_until(run, timeout=30, every=1, message="PostgreSQL", ignore=(psycopg.OperationalError,))

    def drop(self, names: list[str]) -> None:
        for name in names:
            for suffix in ("", "-wal", "-shm"):
                (self.workdir / f"{name}.sqlite3{suffix}").unlink(missing_ok=True)
        if self.kind == "postgres" and names:
            self.admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names))
        self.created = [n for n in self.created if n not in names]

    def drop_leftovers(self) -> None:
        """Scratch databases of runs killed before they could drop theirs (their pid is gone)."""
        if self.kind == "postgres":
            (rows,) = self.admin("SELECT datname FROM pg_database WHERE datname LIKE 'bench_hb_%'")
            pids = {name: name.rsplit("_", 1)[-1] for (name,) in rows}
            self.drop([name for name, pid in pids.items() if pid.isdigit() and not Path(f"/proc/{pid}").exists()])

    def scratch(self, purpose: str) -> str:
        """A fresh copy of the migrated template (an empty database before there is one): its URL."""
        self.drop([name := f"bench_hb_{purpose}_{os.getpid()}"])
        self.created.append(name)
        if self.kind == "sqlite":
            if self.template:
                shutil.copyfile(self.workdir / f"{self.template}.sqlite3", self.workdir / f"{name}.sqlite3")
            return f"sqlite:///{self.workdir / name}.sqlite3"
        self.admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{self.template}"' if self.template else ""))
        return urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{name}"))

    def query(self, url: str, sql: str) -> list[tuple]:
        """Read the service's tables directly (replica state, counts): plain SQL, no Django."""
        if self.kind == "postgres":
            return postgres.query(url, sql)
        with contextlib.closing(sqlite3.connect(urlsplit(url).path, timeout=30)) as conn:
            return conn.execute(sql).fetchall()

    def backends_cpu(self, url: str) -> dict[int, float]:
        """CPU seconds of each PostgreSQL backend serving `url`'s database, by pid (none on SQLite)."""
        if self.kind == "sqlite":
            return {}
        sql = "SELECT pid FROM pg_stat_activity WHERE datname = %s"
        return {pid: process_cpu(pid) for (pid,) in postgres.query(self.admin_url, sql, [url.rsplit("/")[-1]])}

    def version(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        return f"PostgreSQL {self.admin('SHOW server_version')[0][0][0]}"


@dataclass
class Site:
    """A seeded scratch database and the checkout's default server on it."""

    run: Run
    db: Database
    url: str
    env: dict[str, str]
    api: Child
    base: str
    order: str  # the first order of USER, when it was given some

    def wrk(self, path: str, mode: str, *files: str, seconds: float, threads: int = 2, **options: Any) -> dict:
        """wrk with bench/wrk/bench.lua in `mode` on this server for `seconds` (`connections`, 32; `headers`), or
        until `until()` holds (then SIGINT: wrk stops and reports), with the run's variant: its JSON summary, the
        answers counted by kind, `rate`, and the CPU of the server's processes and of its database's backends."""
        if shutil.which("wrk") is None:
            raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
        variant, headers = self.run.variant, list(options.get("headers", ()))
        headers += [TRACEPARENT] if variant in ("traceparent", "otlp") else []
        files += (variant,) if mode == "post" and variant in ("new-key", "replay") else ()
        command = ["wrk", f"-t{threads}", f"-c{options.get('connections', 32)}", f"-d{max(1, round(seconds))}s"]
        command += ["--timeout", "10s", *(x for header in headers for x in ("-H", header))]
        command += ["-s", str(HERE / "wrk" / "bench.lua"), self.base + path, "--", mode, str(threads), *files]
        before = process_tree_cpu(self.api.pid), self.db.backends_cpu(self.url)
        process, deadline = subprocess.Popen(command, stdout=subprocess.PIPE, text=True), time.monotonic() + seconds
        while process.poll() is None and time.monotonic() < deadline + 120 and not options.get("until", bool)():
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            stdout = process.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            stdout = process.communicate()[0]
        after = process_tree_cpu(self.api.pid), self.db.backends_cpu(self.url)
        self.api.check_alive()
        line = next((x for x in stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
        if process.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({process.returncode}):\n{stdout[-2000:]}")
        result = json.loads(line.removeprefix("BENCH_JSON "))
        # Lua prints every number as a float; the answers, by status, are counted here by kind.
        statuses = {int(k): int(v) for k, v in result.items() if k.isdigit()}
        result.update({k: int(result[k]) for k in ("requests", "socket_errors", "reserved")})
        result.update(c201=statuses.get(201, 0), c503=statuses.get(503, 0))
        result["c2xx"] = sum(n for status, n in statuses.items() if 200 <= status < 300)
        result["c5xx"] = sum(n for status, n in statuses.items() if status >= 500)
        result["c_other"] = sum(statuses.values()) - result["c2xx"] - result["c5xx"] - result["reserved"]
        result["rate"] = result["requests"] / result["duration_s"] if result["duration_s"] else float("nan")
        per = 1000 / max(result["requests"], 1)  # ms a request
        result["cpu"] = (after[0] - before[0]) * per
        result["pg"] = sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items()) * per
        return result


class Run:
    """The code under test (or a baseline checkout: `label`), the temp folder, and the processes of a scenario."""

    def __init__(self, code: Path, workdir: Path, quick: bool, label: str = "", variant: str = "") -> None:
        self.code, self.workdir, self.quick, self.label, self.variant = code, workdir, quick, label, variant
        self.processes = Processes(workdir, cwd=code)
        # The checkout's default API server: granian where ticketing_orders/server.py exists, gunicorn before.
        self.server = "granian" if (code / "ticketing_orders" / "server.py").exists() else "gunicorn"
        self.baseline: Run | None = None  # the baseline checkout's run, beside this one's

    def env(self, database_url: str, nats_url: str = "nats://127.0.0.1:9", **extra: str) -> dict[str, str]:
        """The environment a deployment gives the service, pointed at scratch resources, the bench site on its path."""
        (data := self.workdir / "data").mkdir(exist_ok=True)
        extra = {"PYTHONPATH": f"{self.code}{os.pathsep}{HERE / 'site'}", "LOG_LEVEL": "WARNING", **extra}
        return service.service_env(database_url=database_url, nats_url=nats_url, data_dir=data, **KEYS, **extra)

    def django(self, env: dict[str, str], command: str, *, under: Sequence[str] = (), **args: Any) -> Any:
        """`python -m benchsite.tools COMMAND JSON` on the code (`under` a tool such as valgrind): its JSON answer."""
        command_line = [*under, sys.executable, "-m", "benchsite.tools", command, json.dumps(args)]
        out = subprocess.run(command_line, cwd=self.code, env=env, capture_output=True, text=True, timeout=1800)
        if out.returncode:
            raise RuntimeError(f"benchsite.tools {command} failed:\n{out.stderr[-4000:]}")
        return json.loads(out.stdout.splitlines()[-1])

    def migrate_template(self, db: Database) -> None:
        service.migrate(self.env(db.scratch("template")), cwd=self.code)
        db.template = db.created.pop()

    def events(self, db: Database, purpose: str, **extra: str) -> tuple[str, str, dict[str, str]]:
        """A scratch database and a JetStream nats-server of the scenario's own (its store in the temp folder): their
        URLs and the service's environment on them."""
        server = NatsServer(self.workdir, name=f"nats-{purpose}").start()
        self.processes.cleanups.append(server.stop)
        return (url := db.scratch(purpose)), server.url, self.env(url, server.url, **extra)

    def worker(self, env: dict[str, str], name: str = "run_listeners") -> Child:
        return service.start_worker(self.processes, name, env, wait=False)

    def drain(self, worker: Child) -> str:
        """SIGTERM to the worker once it is up (its metrics port open: its signal handlers in place) and has lived a
        little (one stopped while starting says nothing): what to add to the figure if it did not exit 0."""
        with contextlib.suppress(WaitTimeout):  # a checkout of before the worker's metrics port: the age alone
            wait_until(lambda: port_open(worker.metrics_port), timeout=15, message=f"{worker.name}'s metrics port")
        time.sleep(max(0.0, (1 if self.quick else 3) - (time.perf_counter() - worker.started)))
        code = self.processes.stop(worker)
        return f"; **run_listeners exited {code} on SIGTERM**" if code else ""

    def site(self, db: Database, purpose: str, tickets: tuple[str, int], orders: tuple[str, int] = ("", 0)) -> Site:
        """A scratch database with free `tickets` and `orders` of USER, and the default server on it as the
        checkout's files configure it, with the bare route (benchsite.settings), logging at INFO as deployed:
        every request writes its access line (gunicorn's before, the app's now)."""
        env = self.env(url := db.scratch(purpose), LOG_LEVEL="INFO")
        made = self.django(env, "seed", tickets=tickets, orders=orders, user=USER)["orders"] or [""]
        api_env = {**env, "DJANGO_SETTINGS_MODULE": "benchsite.settings"}
        if self.variant == "otlp":
            from devtools.otlp_sink import OtlpSink

            sink = OtlpSink().start()  # counted after the server's SIGTERM, which exports what its batch holds
            self.processes.cleanups += [sink.stop, lambda: log(f"the server exported {len(sink.received())} spans")]
            api_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
        api = service.start_api(self.processes, self.server, api_env, server=self.server, ready_path="/bench/bare")
        return Site(self, db, url, env, api.child, api.url, made[0])
