"""The Kubernetes manifests, offline: schema-valid for a pinned Kubernetes version and wired together."""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock
from urllib.parse import unquote

import kubernetes_validate
import pytest
import yaml

from messaging.jetstream import nats_servers

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "k8s"
# The schema the manifests must satisfy: a release the course's laptop clusters run or exceed.
KUBERNETES_VERSION = "1.33.0"
# How long the worker may take from SIGTERM to exit: it stops fetching (a fetch waits at most 1 s),
# finishes the message in hand, lets a publish in flight end (at most 5 s) and closes the connection.
WORKER_DRAIN_SECONDS = 10
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def load_documents() -> list[tuple[str, dict]]:
    documents = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path.name, document))
    return documents


DOCUMENTS = load_documents()


def resource_id(document: dict) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


def resources(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in DOCUMENTS if doc["kind"] == kind}


def workloads() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in DOCUMENTS if doc["kind"] in WORKLOAD_KINDS}


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict) -> list[dict]:
    """Its containers and init containers."""
    spec = pod_spec(workload)
    return spec["containers"] + spec.get("initContainers", [])


def main_container(workload_name: str) -> dict:
    (container,) = pod_spec(workloads()[workload_name])["containers"]
    return container


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def container_port(container: dict, port: int | str) -> int:
    """A probe's or a Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        assert port in [p["containerPort"] for p in container.get("ports", [])], port
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return number


def env(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def ingress_paths() -> list[str]:
    return [
        path["path"]
        for ingress in resources("Ingress").values()
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]


def ingress_routes(path_regex: str, uri: str) -> bool:
    """Whether ingress-nginx sends `uri` to this path's backend.

    With use-regex the path becomes `location ~* "^<path>"`: a case-insensitive regex anchored at the
    start only, matched against the URI after nginx has decoded %XX, merged slashes and resolved dots.
    """
    return re.match(path_regex, nginx_normalized(uri), flags=re.IGNORECASE) is not None


def nginx_normalized(uri: str) -> str:
    """The path nginx matches locations against: %XX decoded, slashes merged, `.` and `..` resolved."""
    # A request target is a path (and query) even when it starts with `//`: no urlsplit here.
    segments = re.sub("/+", "/", unquote(uri.partition("?")[0])).split("/")[1:]
    resolved: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "..":
            if resolved:
                resolved.pop()
        elif segment != ".":
            resolved.append(segment)
        if segment in (".", "..") and index == len(segments) - 1:
            resolved.append("")  # `/a/..` is the folder `/`, with its slash
    return "/" + "/".join(resolved)


def test_no_resource_is_defined_twice() -> None:
    ids = [resource_id(doc) for _, doc in DOCUMENTS]
    assert len(ids) == len(set(ids)), ids


@pytest.mark.parametrize(("filename", "document"), DOCUMENTS, ids=[f"{f}:{resource_id(d)}" for f, d in DOCUMENTS])
def test_manifest_is_valid_for_pinned_kubernetes(filename: str, document: dict) -> None:
    # Strict: a misspelled or misplaced field is an error, not silently ignored as kubectl would.
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", sorted(workloads()))
def test_workload_selector_matches_its_pod_labels(name: str) -> None:
    workload = workloads()[name]
    assert selects(workload["spec"]["selector"]["matchLabels"], workload["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("name", sorted(resources("Service")))
def test_service_selects_exactly_one_workload_and_its_ports(name: str) -> None:
    service = resources("Service")[name]
    (workload,) = [
        w
        for w in workloads().values()
        if selects(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
    ]
    for port in service["spec"]["ports"]:
        assert any(container_port(c, port["targetPort"]) for c in pod_spec(workload)["containers"])


@pytest.mark.parametrize("name", sorted(resources("PodDisruptionBudget")))
def test_disruption_budget_selects_one_workload_and_lets_a_drain_proceed(name: str) -> None:
    budget = resources("PodDisruptionBudget")[name]
    (workload,) = [
        w
        for w in workloads().values()
        if selects(budget["spec"]["selector"]["matchLabels"], w["spec"]["template"]["metadata"]["labels"])
    ]
    # A minAvailable equal to the replica count would block every node drain.
    if "minAvailable" in budget["spec"]:
        assert budget["spec"]["minAvailable"] < workload["spec"]["replicas"]
    else:
        assert budget["spec"]["maxUnavailable"] >= 1


def test_api_and_worker_have_disruption_budgets() -> None:
    covered = {
        w["metadata"]["name"]
        for w in workloads().values()
        for budget in resources("PodDisruptionBudget").values()
        if selects(budget["spec"]["selector"]["matchLabels"], w["spec"]["template"]["metadata"]["labels"])
    }
    assert {"orders-depl", "orders-worker-depl"} <= covered


def test_api_keeps_a_pod_serving_through_a_drain() -> None:
    assert workloads()["orders-depl"]["spec"]["replicas"] >= 2
    assert resources("PodDisruptionBudget")["orders-pdb"]["spec"]["minAvailable"] >= 1


@pytest.mark.parametrize("name", sorted(workloads()))
def test_every_container_has_resource_requests_and_a_memory_limit(name: str) -> None:
    for container in containers(workloads()[name]):
        resources_ = container["resources"]
        assert {"cpu", "memory"} <= set(resources_["requests"]), container["name"]
        assert "memory" in resources_["limits"], container["name"]


@pytest.mark.parametrize("name", sorted(workloads()))
def test_every_long_running_container_has_liveness_and_readiness_probes(name: str) -> None:
    for container in pod_spec(workloads()[name])["containers"]:
        assert "livenessProbe" in container, container["name"]
        assert "readinessProbe" in container, container["name"]


def test_api_probes() -> None:
    api = main_container("orders-depl")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http = api[probe]["httpGet"]
        assert http["path"] == path
        assert container_port(api, http["port"]) == 3000
        # ALLOWED_HOSTS refuses the pod IP the kubelet would send as Host.
        (host,) = [h["value"] for h in http["httpHeaders"] if h["name"] == "Host"]
        assert host in env(api)["ALLOWED_HOSTS"]["value"].split(",")


def test_worker_runs_the_listeners_and_is_probed_on_its_metrics_port() -> None:
    worker = main_container("orders-worker-depl")
    assert worker["command"] == ["python", "manage.py", "run_listeners"]
    metrics_port = int(env(worker)["WORKER_METRICS_PORT"]["value"])
    assert metrics_port == 9102  # the contract's default
    for probe in ("readinessProbe", "livenessProbe"):
        http = worker[probe]["httpGet"]
        assert http["path"] == "/healthz"
        assert container_port(worker, http["port"]) == metrics_port


def test_worker_grace_period_outlasts_its_drain() -> None:
    grace = pod_spec(workloads()["orders-worker-depl"])["terminationGracePeriodSeconds"]
    assert grace > WORKER_DRAIN_SECONDS


def test_api_runs_granian_as_the_image_does() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert main_container("orders-depl")["command"] == ["python", "-m", "ticketing_orders.server"]
    assert 'CMD ["python", "-m", "ticketing_orders.server"]' in dockerfile


def test_api_threads_and_replicas_fit_postgresql_connections() -> None:
    """Each blocking thread keeps a PostgreSQL connection: the API's total stays well inside the default 100."""
    deployment = workloads()["orders-depl"]
    env = {item["name"]: item.get("value") for item in main_container("orders-depl")["env"]}
    connections = deployment["spec"]["replicas"] * int(env["WEB_CONCURRENCY"]) * int(env["GRANIAN_BLOCKING_THREADS"])
    # The rolling update's extra pod (maxSurge 1) and the worker's connections come on top.
    surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    assert connections * (deployment["spec"]["replicas"] + surge) / deployment["spec"]["replicas"] <= 50


def test_api_grace_period_outlasts_pre_stop_and_the_servers_drain() -> None:
    from ticketing_orders.server import DEFAULTS

    api = main_container("orders-depl")
    command = api["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    gunicorn = gunicorn_settings()
    grace = pod_spec(workloads()["orders-depl"])["terminationGracePeriodSeconds"]
    assert grace > int(command[1]) + int(DEFAULTS["GRANIAN_WORKERS_KILL_TIMEOUT"])
    assert grace > int(command[1]) + gunicorn["graceful_timeout"]


def gunicorn_settings() -> dict:
    """gunicorn.conf.py's names, read without letting it change this process's environment."""
    with mock.patch.dict(os.environ):
        return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def nginx_size(value: str) -> int:
    """An nginx size (`4m`, `512k`, `1024`) in bytes."""
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


def test_ingress_buffers_bodies_and_lets_the_service_answer_413() -> None:
    from django.conf import settings

    from ticketing_orders.server import DEFAULTS

    (ingress,) = resources("Ingress").values()
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    # Every body the service accepts passes, and the first bytes over its limit get its JSON 413.
    assert nginx_size(annotations["nginx.ingress.kubernetes.io/proxy-body-size"]) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    # nginx waits no longer than the service would: a head within granian's deadline, an answer
    # within gunicorn's worker timeout.
    head_seconds = int(DEFAULTS["GRANIAN_HTTP1_HEADER_READ_TIMEOUT"]) / 1000
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) <= head_seconds
    gunicorn = gunicorn_settings()
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) <= gunicorn["timeout"]


def test_nats_runs_jetstream_on_a_persistent_volume() -> None:
    nats = workloads()["nats"]
    (container,) = pod_spec(nats)["containers"]
    image, tag = container["image"].split(":")
    assert image == "nats"
    major, minor = (int(part) for part in tag.split("-")[0].split(".")[:2])
    assert (major, minor) >= (2, 10)
    args = container["args"]
    assert "-js" in args
    store = args[args.index("-sd") + 1]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == store]
    claims = [t["metadata"]["name"] for t in nats["spec"].get("volumeClaimTemplates", [])]
    assert mount["name"] in claims
    monitor = int(args[args.index("-m") + 1])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"].startswith("/healthz")
        assert container_port(container, http["port"]) == monitor


def test_nats_service_is_the_address_the_api_and_worker_use() -> None:
    ports = {p["name"]: p["port"] for p in resources("Service")["nats-srv"]["spec"]["ports"]}
    assert ports == {"client": 4222, "monitor": 8222}
    for workload in ("orders-depl", "orders-worker-depl"):
        url = env(main_container(workload))["NATS_URL"]["value"]
        assert url == "http://nats-srv:4222"
        assert nats_servers(url) == [f"nats://nats-srv:{ports['client']}"]


def test_ingress_is_nginx_with_regex_paths_to_orders_srv() -> None:
    (ingress,) = resources("Ingress").values()
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    service_ports = {p["port"] for p in resources("Service")["orders-srv"]["spec"]["ports"]}
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] == "ticketing.dev"
        for path in rule["http"]["paths"]:
            assert path["pathType"] == "ImplementationSpecific"
            backend = path["backend"]["service"]
            assert backend["name"] == "orders-srv"
            assert backend["port"]["number"] in service_ports


ROUTED = [
    "/api/orders",
    "/api/orders/",
    "/api/orders/65f0c0ffee0000000000abcd",
    "/api/orders?limit=10&after=65f0c0ffee0000000000abcd",
    "/api/orders/schema/",
    "/api/orders/docs/",
    "/api/orders/admin/",
    "/api/orders/static/admin/css/base.css",
]
NEVER_ROUTED = [
    "/metrics",
    "/metrics/",
    "/METRICS",
    "/metrics?format=openmetrics",
    "/%6Detrics",
    "//metrics",
    "/api/orders/../../metrics",
    "/api/orders/%2e%2e/metrics",
    "/healthz",
    "/readyz",
    "/",
]


@pytest.mark.parametrize("uri", ROUTED)
def test_ingress_routes_the_orders_api(uri: str) -> None:
    assert any(ingress_routes(path, uri) for path in ingress_paths())


@pytest.mark.parametrize("uri", NEVER_ROUTED)
def test_ingress_never_routes_metrics_or_probes(uri: str) -> None:
    assert not [path for path in ingress_paths() if ingress_routes(path, uri)]


def test_orders_images_are_the_skaffold_artifact() -> None:
    skaffold = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    (artifact,) = skaffold["build"]["artifacts"]
    assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()
    for name in ("orders-depl", "orders-worker-depl"):
        for container in containers(workloads()[name]):
            assert container["image"] == artifact["image"], container["name"]
    # Every manifest here is deployed by skaffold.
    (pattern,) = skaffold["manifests"]["rawYaml"]
    assert sorted(ROOT.glob(pattern)) == sorted(K8S_DIR.glob("*.yaml"))


def test_orders_pods_run_as_the_image_user_without_privileges() -> None:
    (user,) = re.findall(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    for name in ("orders-depl", "orders-worker-depl"):
        security = pod_spec(workloads()[name])["securityContext"]
        assert security["runAsNonRoot"] is True
        assert (str(security["runAsUser"]), str(security["runAsGroup"])) == user
        for container in containers(workloads()[name]):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def secret_references() -> Iterator[tuple[str, str]]:
    for workload in workloads().values():
        for container in containers(workload):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield ref["name"], ref["key"]


def test_secrets_used_are_the_documented_ones() -> None:
    used = set(secret_references())
    assert used == {
        ("jwt-secret", "JWT_KEY"),
        ("orders-secret", "SECRET_KEY"),
        ("orders-secret", "DATABASE_URL"),
        ("orders-secret", "POSTGRES_PASSWORD"),
    }
    header = (K8S_DIR / "orders-depl.yaml").read_text().split("\napiVersion:")[0]
    for secret, key in used:
        assert re.search(rf"kubectl create secret generic {secret}\b[^\n]*(\n#\s+--from-literal[^\n]*)*", header)
        assert f"--from-literal={key}=" in header, key


def test_orders_containers_get_every_setting_production_requires() -> None:
    for name in ("orders-depl", "orders-worker-depl"):
        for container in containers(workloads()[name]):
            assert {"JWT_KEY", "SECRET_KEY", "DATABASE_URL"} <= set(env(container)), container["name"]


def service_bounds() -> dict:
    """The settings' defaults for PostgreSQL, as the settings module computes them (a fresh process)."""
    script = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps({'options': settings.DATABASES['default']['OPTIONS'], 'roles': settings.DATABASE_ROLES}))"
    )
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("DB_", "WORKER_DB_", "MIGRATE_DB_"))
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="ticketing_orders.settings",
        DATABASE_URL="postgres://orders@db.invalid:5432/orders",
        JWT_KEY="bounds-only",
        SECRET_KEY="bounds-only",
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def longest_api_database_wait() -> float:
    """How long one request can wait on a dark database before it answers 503, by the defaults: the
    connection's health check on a half-open link (cut by tcp_user_timeout or keepalives), then one connect."""
    options = service_bounds()["options"]
    dead_link = max(
        options["tcp_user_timeout"] / 1000,
        options["keepalives_idle"] + options["keepalives_interval"] * options["keepalives_count"],
    )
    return dead_link + options["connect_timeout"]


def test_ingress_waits_a_little_longer_than_the_service_and_never_its_default_minute() -> None:
    (ingress,) = resources("Ingress").values()
    annotations = ingress["metadata"]["annotations"]
    bound = longest_api_database_wait()
    # The answer is what waits on the database (sending the buffered request does not).
    seconds = int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"])
    assert bound < seconds <= 2 * bound, (seconds, bound)
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-connect-timeout"]) <= 5


def test_api_probes_wait_longer_than_a_dark_database_holds_a_thread() -> None:
    api = main_container("orders-depl")
    bound = longest_api_database_wait()
    for probe in ("readinessProbe", "livenessProbe"):
        assert api[probe]["timeoutSeconds"] > bound, probe  # the probe sees the 503, not its own timeout
    ready = api["readinessProbe"]
    assert ready["periodSeconds"] * ready["failureThreshold"] + ready["timeoutSeconds"] <= 30  # out within 30 s


def test_database_server_timeouts_bound_the_api_and_spare_migrations() -> None:
    roles = service_bounds()["roles"]
    assert 0 < roles["api"]["statement_timeout"] <= 10_000
    assert roles["worker"]["statement_timeout"] >= roles["api"]["statement_timeout"]
    timeouts = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
    assert {name: roles["migrate"][name] for name in timeouts} == dict.fromkeys(timeouts, 0)
    # Every role, migrations too: the server drops a client gone silent (its locks freed) within seconds.
    for role in roles.values():
        assert role["tcp_keepalives_idle"] + role["tcp_keepalives_interval"] * role["tcp_keepalives_count"] <= 10
