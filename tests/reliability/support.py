"""Real processes for the fault tests: a nats-server cluster, a PostgreSQL of our own, gunicorn, workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nats
import psycopg
import pytest
import requests
from django.conf import settings
from nats.js.errors import NotFoundError

from core.ids import new_object_id
from messaging.embedded import nats_server_binary
from messaging.jetstream import nats_servers
from testsupport.processes import free_port
from testsupport.waiting import wait_until
from web.management.commands.mint_token import session_cookie_value

BASE_DIR = Path(settings.BASE_DIR)
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVICE_UNAVAILABLE = {"errors": [{"message": "Service unavailable"}]}


@dataclass(frozen=True)
class Scale:
    """How big each scenario runs: `ci` (the default `pytest` run) or `full` (RELIABILITY_SCALE=full)."""

    name: str
    cluster_orders: int
    cluster_ticket_events: int
    db_outage_seconds: float
    race_rounds: int
    race_users: int
    shuffle_tickets: int
    shuffle_versions: int
    worker_kills: int
    nats_outage_seconds: float
    fuzz_examples: int


SCALES = {
    "ci": Scale("ci", 200, 2000, 8, 5, 50, 60, 8, 2, 5, 50),
    "full": Scale("full", 500, 5000, 20, 20, 100, 200, 20, 5, 30, 300),
}


# The scenarios that bring their own PostgreSQL and NATS do not depend on DATABASE_URL: when the suite
# runs once per database, they run in the pass without one (the SQLite pass) and are skipped in the other.
own_servers_only = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")) and os.environ.get("RELIABILITY_OWN_SERVERS") != "always",
    reason="brings its own PostgreSQL and NATS: runs in the pass without DATABASE_URL "
    "(RELIABILITY_OWN_SERVERS=always runs it anyway)",
)


def current_scale() -> Scale:
    name = os.environ.get("RELIABILITY_SCALE", "ci")
    if name not in SCALES:
        raise ValueError(f"RELIABILITY_SCALE must be one of {sorted(SCALES)}, got {name!r}")
    return SCALES[name]


def record(scenario: str, **figures: Any) -> None:
    """Print a scenario's figures; also append them as a JSON line to $RELIABILITY_REPORT when set."""
    line = json.dumps({"scenario": scenario, "scale": current_scale().name, **figures}, sort_keys=True)
    print(f"reliability: {line}")
    if path := os.environ.get("RELIABILITY_REPORT"):
        with open(path, "a") as report:
            report.write(line + "\n")


def wait_for_port(port: int, *, timeout: float, alive: Callable[[], bool], what: str, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what} exited before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")


class Child:
    """A subprocess in a session (process group) of its own, logging to a file; `stop()` always ends it all."""

    def __init__(self, name: str, args: Sequence[str], *, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> Child:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> int:
        """SIGKILL, the fault under test: no drain, no goodbye."""
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(10)

    def stop(self, timeout: float = 5) -> int | None:
        """SIGTERM, then SIGKILL to the whole group: nothing the test started outlives it."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        return self.process.returncode


class Processes:
    """Every child a test started, stopped in reverse order by the fixture's finalizer."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []
        self.cleanups: list[Callable[[], None]] = []

    def start(self, name: str, args: Sequence[str], *, env: dict[str, str] | None = None) -> Child:
        child = Child(name, args, log_path=self.workdir / f"{name}.log", env=env)
        self.children.append(child)
        return child.start()

    def close(self) -> None:
        errors = []
        # SIGTERM to all at once, so their shutdowns overlap; then each is waited for and its group killed.
        for child in self.children:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    child.process.terminate()
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


# -- PostgreSQL of the test's own -------------------------------------------------------------------------


def as_postgres(*args: str) -> list[str]:
    """Debian's server binaries refuse to run as root: run them as the `postgres` OS user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


class PostgresServer:
    """A throw-away PostgreSQL 15 cluster (initdb + pg_ctl) on a free loopback port, trust auth."""

    def __init__(self, *, host: str = "127.0.0.1", prefix: Sequence[str] = ()) -> None:
        """`host`: the address it listens on; `prefix`: what its commands run under (`ip netns exec NAME`)."""
        # Not pytest's tmp_path: its parents are private to root, and the server runs as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="reliability-pg-"))
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


def database_under_test_url() -> str:
    """DATABASE_URL for a subprocess, pointing at the database this test run uses (by vendor, so a
    wrapping backend such as an instrumented one is followed too)."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        user = quote(db.get("USER") or "", safe="")
        password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}{port}/{db['NAME']}"
    raise NotImplementedError(f"no DATABASE_URL for {connection.vendor}")


def query(database_url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


# -- the service's processes ------------------------------------------------------------------------------


def service_env(*, database_url: str, nats_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The production settings, with the test's JWT key so the test's cookies are accepted."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ticketing_orders.settings",
        "JWT_KEY": settings.JWT_KEY,
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
        # Quick redelivery: the scenarios wait for what a fault held back.
        "EVENT_RETRY_BASE_SECONDS": "0.1",
        "EVENT_RETRY_MAX_SECONDS": "1",
        "EVENT_ACK_WAIT_SECONDS": "5",
    }
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if result.returncode:
        raise RuntimeError(f"migrate failed:\n{result.stdout}\n{result.stderr}")


def start_api(processes: Processes, name: str, env: dict[str, str], *, workers: int = 2) -> str:
    """gunicorn with the repository's gunicorn.conf.py on a free port; returns its base URL."""
    port = free_port()
    child = processes.start(
        name,
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "ticketing_orders.wsgi"],
        env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers)},
    )
    wait_for_port(port, timeout=60, alive=child.alive, what=name)
    return f"http://127.0.0.1:{port}"


def start_worker(processes: Processes, name: str, env: dict[str, str]) -> Child:
    """`python manage.py run_listeners`, waited for until its consumers listen."""
    metrics_port = free_port()
    child = processes.start(
        name,
        [sys.executable, "manage.py", "run_listeners"],
        env={**env, "WORKER_METRICS_PORT": str(metrics_port)},
    )
    child.metrics_port = metrics_port

    def listening() -> bool:
        assert child.alive(), f"{name} exited:\n{child.log()[-3000:]}"
        return "listening on" in child.log()

    wait_until(listening, timeout=60, message=f"{name} to listen")
    return child


# -- NATS -------------------------------------------------------------------------------------------------


class NatsCluster:
    """Three JetStream nats-servers clustered on loopback: routes on free ports, a store each."""

    def __init__(
        self,
        processes: Processes,
        *,
        size: int = 3,
        name: str = "reliability",
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
    ) -> None:
        """`host`: where clients reach the nodes (routes stay on loopback); `prefix`: as PostgresServer's."""
        self.processes = processes
        self.name = name
        self.host = host
        self.prefix = list(prefix)
        self.client_ports = [free_port() for _ in range(size)]
        self.route_ports = [free_port() for _ in range(size)]
        self.nodes: dict[str, Child] = {}

    @property
    def url(self) -> str:
        return ",".join(self.node_url(index) for index in range(len(self.client_ports)))

    def node_url(self, index: int) -> str:
        return f"nats://{self.host}:{self.client_ports[index]}"

    def node_args(self, index: int) -> tuple[str, list[str]]:
        server_name = f"n{index + 1}"
        store = self.processes.workdir / f"nats-{server_name}"
        store.mkdir(exist_ok=True)
        routes = ",".join(f"nats-route://127.0.0.1:{p}" for i, p in enumerate(self.route_ports) if i != index)
        return server_name, [
            *self.prefix,
            nats_server_binary(),
            "--jetstream",
            "--store_dir",
            str(store),
            "--server_name",
            server_name,
            "--addr",
            self.host,
            "--port",
            str(self.client_ports[index]),
            "--cluster_name",
            self.name,
            "--cluster",
            f"nats://127.0.0.1:{self.route_ports[index]}",
            "--routes",
            routes,
        ]

    def start_node(self, index: int) -> Child:
        server_name, args = self.node_args(index)
        # A restarted node appends to the same log under a new Child.
        child = self.processes.start(f"nats-{server_name}", args)
        self.nodes[server_name] = child
        wait_for_port(
            self.client_ports[index], timeout=20, alive=child.alive, what=f"nats-server {server_name}", host=self.host
        )
        return child

    def start(self) -> NatsCluster:
        for index in range(len(self.client_ports)):
            self.start_node(index)
        return self

    def index_of(self, server_name: str) -> int:
        return int(server_name.removeprefix("n")) - 1


class Bus:
    """A nats-py client (every server of NATS_URL) on a loop of its own, callable from synchronous tests."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="reliability-bus", daemon=True)
        self.thread.start()

        async def quiet(exc: Exception) -> None:
            """Servers die on purpose here: no traceback for each reconnect attempt."""

        self.client = self.call(
            nats.connect(
                servers=nats_servers(url),
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.2,
                connect_timeout=2,
                name="reliability-tests",
                error_cb=quiet,
            )
        )
        self.js = self.client.jetstream()

    def call(self, coro: Coroutine, *, timeout: float = 120) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if not self.client.is_closed:
                self.call(self.client.close(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()

    def publish_all(
        self,
        events: Sequence[tuple[str, dict, str]],
        *,
        window: int = 64,
        give_up_after: float = 120,
        counts: dict[str, int] | None = None,
    ) -> dict[str, int]:
        """Publish (subject, payload, msg id) with a bounded window, re-sending a failed publish with the
        same Nats-Msg-Id (the server drops a copy that did land) until it is acknowledged.

        Returns (and keeps updating `counts`, for a watcher on another thread) {"published": n,
        "retries": n, "duplicates": n}; duplicates are acks the server marked as such.
        """
        counts = counts if counts is not None else {}
        for key in ("published", "retries", "duplicates"):
            counts.setdefault(key, 0)

        async def one(subject: str, payload: dict, msg_id: str, gate: asyncio.Semaphore) -> None:
            data = json.dumps(payload).encode()
            deadline = time.monotonic() + give_up_after
            async with gate:
                while True:
                    try:
                        ack = await self.js.publish(subject, data, headers={"Nats-Msg-Id": msg_id}, timeout=2)
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        counts["retries"] += 1
                        await asyncio.sleep(0.2)
                        continue
                    counts["published"] += 1
                    counts["duplicates"] += bool(ack.duplicate)
                    return

        async def burst() -> None:
            gate = asyncio.Semaphore(window)
            await asyncio.gather(*(one(s, p, m, gate) for s, p, m in events))

        self.call(burst(), timeout=give_up_after + 600)
        return counts

    def stream_info(self, name: str):
        return self.call(self.js.stream_info(name), timeout=30)

    def messages(self, stream: str, subject: str) -> list:
        """Every message of `subject` on the stream, oldest first."""

        async def collect() -> list:
            found, seq = [], 1
            while True:
                try:
                    msg = await self.js.get_msg(stream, seq=seq, subject=subject, next=True)
                except NotFoundError:
                    return found
                found.append(msg)
                seq = msg.seq + 1

        return self.call(collect(), timeout=300)


# -- HTTP -------------------------------------------------------------------------------------------------


def post_order(base_url: str, ticket_id: str, cookie: str) -> tuple[int, Any]:
    """One create on a connection of its own: a reused keep-alive connection that gunicorn closes after
    its 2 s keepalive can be reset under the client's feet, which says nothing about the service."""
    response = requests.post(
        f"{base_url}/api/orders",
        json={"ticketId": ticket_id},
        headers={"Cookie": cookie, "Connection": "close"},
        timeout=60,
    )
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return response.status_code, body


# -- gray failures: a network namespace of the test's own, and packets that vanish ---------------------


def run_command(*args: str, timeout: float = 20) -> None:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")


def netns_unavailable() -> str | None:
    """Why the blackhole tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root for network namespaces and iptables (CI runs as root)"
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        return f"needs {' and '.join(missing)}: apt-get install iproute2 iptables (make test does, as root)"
    return None


class Netns:
    """A network namespace for servers, joined to the test's namespace by a veth pair of link-local addresses
    that lead nowhere else. `blackhole(port)` makes every packet to and from that port inside the namespace
    vanish (iptables -j DROP: no RST, no ICMP), the way a partition or a dead node behind a balancer does.

    Everything it changes is inside the namespace or on its own veth pair, named after this process, so
    `destroy()` (deleting the namespace, which takes the pair and the rules with it) undoes all of it.
    """

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100_000}{secrets.token_hex(2)}"  # interface names are at most 15 characters
        self.name = f"gray{tag}"
        self.host_side = f"gh{tag}"
        self.ns_side = f"gn{tag}"
        # A /30 of 169.254.0.0/16 (link-local: never routed) away from 169.254.169.x.
        base = secrets.randbelow(150) + 1, secrets.randbelow(63) * 4
        self.host_ip = f"169.254.{base[0]}.{base[1] + 1}"
        self.ip = f"169.254.{base[0]}.{base[1] + 2}"
        self.rules: list[list[str]] = []
        self.created = False

    @property
    def prefix(self) -> list[str]:
        """Run a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def create(self) -> Netns:
        run_command("ip", "netns", "add", self.name)
        self.created = True
        run_command(
            "ip", "link", "add", self.host_side, "type", "veth", "peer", "name", self.ns_side, "netns", self.name
        )
        run_command("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_side)
        run_command("ip", "link", "set", self.host_side, "up")
        run_command("ip", "-n", self.name, "addr", "add", f"{self.ip}/30", "dev", self.ns_side)
        run_command("ip", "-n", self.name, "link", "set", self.ns_side, "up")
        run_command("ip", "-n", self.name, "link", "set", "lo", "up")
        return self

    def _rules(self, port: int) -> list[list[str]]:
        return [
            ["INPUT", "-i", self.ns_side, "-p", "tcp", "--dport", str(port), "-j", "DROP"],
            ["OUTPUT", "-o", self.ns_side, "-p", "tcp", "--sport", str(port), "-j", "DROP"],
        ]

    def blackhole(self, port: int) -> None:
        """From now on, packets to and from `port` over the veth pair are dropped, both ways."""
        for rule in self._rules(port):
            run_command(*self.prefix, "iptables", "-w", "5", "-I", *rule)
            self.rules.append(rule)

    def restore(self, port: int) -> None:
        for rule in self._rules(port):
            run_command(*self.prefix, "iptables", "-w", "5", "-D", *rule)
            self.rules.remove(rule)

    def destroy(self) -> None:
        if self.created:
            with contextlib.suppress(Exception):
                run_command("ip", "netns", "del", self.name)
        # The pair goes with the namespace; if the namespace never got its end, ours is still here.
        with contextlib.suppress(Exception):
            run_command("ip", "link", "del", self.host_side)


@dataclass
class Answer:
    """One HTTP exchange as the client saw it: when it was sent and answered, status and body
    (status 0: no answer, e.g. the client's own timeout)."""

    started: float
    ended: float
    status: int
    body: Any

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def timed_get(url: str, *, timeout: float = 30) -> Answer:
    started = time.monotonic()
    try:
        response = requests.get(url, timeout=timeout, headers={"Connection": "close"})
    except requests.RequestException as exc:
        return Answer(started, time.monotonic(), 0, type(exc).__name__)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return Answer(started, time.monotonic(), response.status_code, body)


class GrayTraffic:
    """Creators posting orders for free tickets back to back, and pollers of /readyz, the API's /healthz and
    the worker's /healthz every `probe_every` seconds; every answer is kept as an `Answer`."""

    def __init__(
        self,
        api: str,
        tickets: Sequence[str],
        *,
        creators: int = 4,
        worker_port: int | None = None,
        probe_every: float = 0.5,
    ) -> None:
        self.api = api
        self.free = deque(tickets)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.creates: list[Answer] = []
        self.probes: dict[str, list[Answer]] = {"readyz": [], "healthz": [], "worker": []}
        self.errors: list[BaseException] = []
        self.probe_every = probe_every
        self.cookies = []
        for _ in range(creators):
            uid = new_object_id()
            self.cookies.append(f"session={session_cookie_value(user_id=uid, email=f'{uid}@test.com')}")
        urls = {"readyz": f"{api}/readyz", "healthz": f"{api}/healthz"}
        if worker_port is not None:
            urls["worker"] = f"http://127.0.0.1:{worker_port}/healthz"
        self.threads = [threading.Thread(target=self.create_loop, args=(cookie,)) for cookie in self.cookies]
        self.threads += [threading.Thread(target=self.probe_loop, args=(name, url)) for name, url in urls.items()]

    def __enter__(self) -> GrayTraffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)

    def created(self) -> int:
        with self.lock:
            return sum(1 for answer in self.creates if answer.status == 201)

    def create_loop(self, cookie: str) -> None:
        try:
            while not self.stop.is_set():
                with self.lock:
                    if not self.free:
                        return
                    ticket = self.free.popleft()
                started = time.monotonic()
                try:
                    status, body = post_order(self.api, ticket, cookie)
                except requests.RequestException as exc:
                    status, body = 0, type(exc).__name__
                with self.lock:
                    self.creates.append(Answer(started, time.monotonic(), status, body))
                    if status != 201:
                        self.free.append(ticket)  # not reserved: another try may take it
                time.sleep(0.02)
        except BaseException as exc:
            self.errors.append(exc)

    def probe_loop(self, name: str, url: str) -> None:
        try:
            while not self.stop.is_set():
                answer = timed_get(url)
                with self.lock:
                    self.probes[name].append(answer)
                self.stop.wait(self.probe_every)
        except BaseException as exc:
            self.errors.append(exc)
