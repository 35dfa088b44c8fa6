"""The API and the worker running for real (nats-server, the API as shipped on granian, run_listeners), scraped by a
real Prometheus."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from core.ids import new_object_id
from tests.deploy.test_k8s import containers, env, main_container, workloads
from testsupport.http import session_cookie
from testsupport.nats import NatsServer
from testsupport.processes import Processes, free_port
from testsupport.service import migrate, start_api, start_worker
from testsupport.testrun import JetStream, service_env_for_tests
from testsupport.waiting import wait_for_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
# The address every "pod" of the test has, as the kubelet would give it in the cluster.
POD_IP = "127.0.0.1"
# Scrapes and rule evaluations every second: the checks wait for a few of each.
INTERVAL = "1s"


def tool(name: str) -> str:
    """promtool or prometheus from Debian's `prometheus` package."""
    path = shutil.which(name)
    assert path, f"{name} is missing: `make test` installs Debian's prometheus package (apt-get install prometheus)"
    return path


def expand_kubernetes_variables(value: str, variables: dict[str, str]) -> str:
    """What the kubelet does to `$(NAME)` in an env value: the earlier variable's value."""
    return re.sub(r"\$\((\w+)\)", lambda m: variables[m[1]], value)


def api_allowed_hosts() -> str:
    """The API's ALLOWED_HOSTS exactly as k8s/orders-depl.yaml sets it, in a pod at POD_IP."""
    return expand_kubernetes_variables(env(main_container("orders-depl"))["ALLOWED_HOSTS"]["value"], {"POD_IP": POD_IP})


def kubernetes_pod_targets(live_ports: dict[tuple[str, int], int]) -> list[dict]:
    """What Prometheus' Kubernetes discovery (role: pod) finds for the manifests' pods: a target for each
    container port, and one for each container without ports, with the meta labels the relabeling reads.

    `live_ports` maps (workload, container port) to the port of the process the test runs for it; every
    other target (NATS, PostgreSQL, init containers) gets a port where nothing listens.
    """
    targets = []
    for name, workload in sorted(workloads().items()):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        pod = {
            "__meta_kubernetes_namespace": "default",
            "__meta_kubernetes_pod_name": f"{name}-0",
            **{f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v for k, v in labels.items()},
        }
        for container in containers(workload):
            for port in container.get("ports") or [{}]:
                address_port = live_ports.get((name, port.get("containerPort")), free_port())
                meta = {**pod, "__meta_kubernetes_pod_container_name": container["name"]}
                if "name" in port:
                    meta["__meta_kubernetes_pod_container_port_name"] = port["name"]
                targets.append({"targets": [f"{POD_IP}:{address_port}"], "labels": meta})
    return targets


def prometheus_config(directory: Path, pod_targets: list[dict]) -> Path:
    """deploy/prometheus/prometheus.yml with the Kubernetes discovery swapped for a file of what it would
    find (Debian's Prometheus is built without it); relabeling, job names and rule files are the shipped ones."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets_file = directory / "pods.json"
    targets_file.write_text(json.dumps(pod_targets))
    config["global"] = {"scrape_interval": INTERVAL, "scrape_timeout": INTERVAL, "evaluation_interval": INTERVAL}
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}], job["job_name"]
        job["file_sd_configs"] = [{"files": [str(targets_file)]}]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def exported_names(text: str) -> set[str]:
    """Every sample name a Prometheus text exposition can hold: its samples', and for each family the
    names its type implies (a counter `x` is `x_total` and `x_created`, a histogram `x_bucket`, ...)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
        "info": ("_info",),
        "untyped": ("",),
    }
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


@dataclass
class ObservedService:
    """The running API and worker, and the Prometheus that scrapes them."""

    api: str
    worker: str
    prometheus: str
    processes: Processes
    bus: JetStream
    pod_targets: list[dict] = field(default_factory=list)

    def scrape(self, base: str) -> str:
        response = requests.get(f"{base}/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def api_v1(self, path: str, **params) -> dict | list:
        """Prometheus' HTTP API: the `data` of a successful answer."""
        answer = requests.get(f"{self.prometheus}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def prometheus_samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """The samples of one metric of Prometheus' own /metrics (its rule evaluation counters)."""
        text = requests.get(f"{self.prometheus}/metrics", timeout=10).text
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]


class Probes:
    """The kubelet's part: /readyz of the API and /healthz of the worker every second (the worker's
    orders_worker_nats_connected is refreshed by its /healthz answers)."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="probes", daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            for url in self.urls:
                with contextlib.suppress(requests.RequestException):
                    requests.get(url, timeout=5)
            self.stop.wait(1)

    def __enter__(self) -> Probes:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


def create_an_order(api: str, bus: JetStream) -> None:
    """The traffic that makes the service's series appear: a ticket event consumed, an order created
    (and its order:created relayed), a list and a 404."""
    ticket_id = new_object_id()
    ticket = {"id": ticket_id, "version": 0, "title": "concert", "price": 20, "userId": new_object_id()}
    bus.publish("ticket:created", ticket)
    headers = {"Cookie": session_cookie(new_object_id(), jwt_key=settings.JWT_KEY, email="alerts@test.com")}

    def created() -> bool:
        # 404 until the worker has applied ticket:created to the replica.
        response = requests.post(f"{api}/api/orders", json={"ticketId": ticket_id}, headers=headers, timeout=10)
        assert response.status_code in (201, 404), response.text
        if response.status_code == 404:
            time.sleep(0.1)
        return response.status_code == 201

    wait_until(created, timeout=60, message="the ticket to reach the replica and the order to be created")
    assert requests.get(f"{api}/api/orders", headers=headers, timeout=10).status_code == 200
    assert requests.get(f"{api}/api/orders/{new_object_id()}", headers=headers, timeout=10).status_code == 404


@pytest.fixture(scope="session")
def observed_service(tmp_path_factory) -> Iterator[ObservedService]:
    """nats-server, the API (granian, as shipped) and the worker on a SQLite file of their own, traffic through them,
    probes as the kubelet sends them, and Prometheus scraping both with deploy/prometheus/'s config and rules."""
    prometheus_binary = tool("prometheus")
    workdir = tmp_path_factory.mktemp("observed")
    processes = Processes(workdir)
    bus = None
    try:
        nats = NatsServer(workdir).start()
        processes.cleanups.append(nats.stop)
        service = service_env_for_tests(
            database_url=f"sqlite:///{workdir / 'orders.sqlite3'}",
            nats_url=nats.url,
            data_dir=workdir,
            ALLOWED_HOSTS=api_allowed_hosts(),
            WORKER_METRICS_HOST="127.0.0.1",
        )
        migrate(service)
        api = start_api(processes, "api", service)
        worker = start_worker(processes, "worker", service)
        worker_base = f"http://127.0.0.1:{worker.metrics_port}"
        bus = JetStream(nats.url, name="deploy-tests")
        with Probes([f"{api.url}/readyz", f"{worker_base}/healthz"]):
            create_an_order(api.url, bus)
            pod_targets = kubernetes_pod_targets(
                {("orders-depl", 3000): api.port, ("orders-worker-depl", 9102): worker.metrics_port}
            )
            config = prometheus_config(workdir, pod_targets)
            prometheus_port = free_port()
            prometheus = processes.start(
                "prometheus",
                [
                    prometheus_binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--log.level=warn",
                ],
            )
            wait_for_port(prometheus_port, timeout=60, alive=prometheus.alive, what="prometheus")
            observed = ObservedService(
                api=api.url,
                worker=worker_base,
                prometheus=f"http://127.0.0.1:{prometheus_port}",
                processes=processes,
                bus=bus,
                pod_targets=pod_targets,
            )

            def ready() -> bool:
                with contextlib.suppress(requests.RequestException):
                    return requests.get(f"{observed.prometheus}/-/ready", timeout=2).status_code == 200
                return False

            wait_until(ready, timeout=60, message="prometheus to be ready")
            yield observed
    finally:
        if bus is not None:
            bus.close()
        processes.close()
