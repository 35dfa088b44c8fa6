"""deploy/prometheus/: the alert rules pass promtool and their unit tests, and a real Prometheus scrapes the
running API and worker with the shipped configuration, evaluates the rules without errors and alerts."""

from __future__ import annotations

import subprocess
import time

import yaml

from tests.deploy.conftest import POD_IP, PROMETHEUS_DIR, ObservedService, tool
from tests.deploy.promql import metric_names
from tests.deploy.test_k8s import env, main_container
from testsupport.waiting import wait_until

RULES = PROMETHEUS_DIR / "orders-alerts.yaml"
RULE_TESTS = PROMETHEUS_DIR / "orders-alerts.test.yaml"
SEVERITIES = {"critical", "warning"}
JOBS = {"orders-api", "orders-worker"}


def alerting_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS_DIR)


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_catch_a_broken_rule(tmp_path) -> None:
    """A threshold moved or a job selector dropped makes promtool's tests fail: they pin the behaviour."""
    broken = RULES.read_text().replace(
        "(orders_worker_failed_events_open) > 0", "(orders_worker_failed_events_open) > 5"
    )
    broken = broken.replace(
        'changes(process_start_time_seconds{job="orders-worker"}', "changes(process_start_time_seconds"
    )
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    result = subprocess.run(
        [tool("promtool"), "test", "rules", RULE_TESTS.name], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode != 0
    assert "alertname: OrdersFailedEventsOpen" in result.stderr + result.stdout
    assert "alertname: OrdersWorkerRestarting" in result.stderr + result.stdout


def test_every_alert_has_a_duration_a_severity_and_a_runbook_hint() -> None:
    rules = alerting_rules()
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert rule["annotations"]["runbook"].endswith(rule["alert"]), rule["alert"]


def test_every_alert_has_a_unit_test_that_fires_and_one_that_does_not() -> None:
    fires, silent = set(), set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in alerting_rules()}
    assert fires == alerts
    assert silent == alerts


def test_the_signals_of_the_issue_have_alerts() -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in alerting_rules()))
    assert {
        "orders_worker_outbox_oldest_age_seconds",
        "orders_worker_consumer_pending",
        "orders_worker_failed_events_open",
        "django_http_responses_total_by_status_view_method_total",  # 5xx rate and /readyz answers
        "orders_worker_nats_connected",
        "process_start_time_seconds",
        "up",
    } <= used


def test_the_rules_select_the_jobs_the_scrape_configuration_defines() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == JOBS
    assert config["rule_files"] == [RULES.name]
    for rule in alerting_rules():
        selects_a_job = any(f'job="{job}"' in rule["expr"] for job in JOBS)
        # Only the worker's own metrics may go without a job: no other process exports them.
        worker_only = all(name.startswith("orders_worker_") for name in metric_names(rule["expr"]))
        assert selects_a_job or worker_only, rule["alert"]


def test_the_api_allows_its_pod_address_as_host_for_the_scrapes() -> None:
    """Prometheus scrapes a pod at its IP and sends that as Host; Django answers 400 to a Host outside
    ALLOWED_HOSTS, so the manifest adds the pod's IP from the downward API (defined before its use)."""
    variables = list(env(main_container("orders-depl")))
    pod_ip = env(main_container("orders-depl"))["POD_IP"]
    assert pod_ip["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert "$(POD_IP)" in env(main_container("orders-depl"))["ALLOWED_HOSTS"]["value"].split(",")
    assert variables.index("POD_IP") < variables.index("ALLOWED_HOSTS")


# -- a real Prometheus -----------------------------------------------------------------------------------


def active_targets(observed: ObservedService) -> list[dict]:
    return observed.api_v1("targets", state="active")["activeTargets"]


def wait_for_targets_up(observed: ObservedService) -> list[dict]:
    def up() -> list[dict] | None:
        targets = active_targets(observed)
        if targets and all(t["health"] == "up" for t in targets):
            return targets
        time.sleep(0.2)
        return None

    return wait_until(up, timeout=60, message="every scrape target to be up")


def wait_for_rule_evaluations(observed: ObservedService, count: int) -> None:
    """Until every rule group has been evaluated `count` more times (Prometheus' own counters)."""
    groups = {group["name"] for group in yaml.safe_load(RULES.read_text())["groups"]}

    def iterations() -> dict[str, float]:
        # rule_group is "<rule file>;<group name>"
        samples = observed.prometheus_samples("prometheus_rule_group_iterations_total")
        return {labels["rule_group"].rsplit(";", 1)[1]: value for labels, value in samples}

    def all_groups() -> dict[str, float] | None:
        found = iterations()
        return found if set(found) == groups else None

    def evaluated() -> bool:
        done = all(now >= before[g] + count for g, now in iterations().items())
        if not done:
            time.sleep(0.2)  # Prometheus evaluates once a second: no need to ask fifty times
        return done

    before = wait_until(all_groups, timeout=60, message="the rule groups")
    wait_until(evaluated, timeout=60, message=f"{count} evaluations of every rule group")


def test_prometheus_finds_the_api_and_the_worker_pods_with_the_shipped_relabeling(observed_service) -> None:
    targets = wait_for_targets_up(observed_service)
    api_port = observed_service.api.rsplit(":", 1)[1]
    worker_port = observed_service.worker.rsplit(":", 1)[1]
    found = {(t["labels"]["job"], t["labels"]["instance"], t["labels"]["pod"]) for t in targets}
    assert found == {
        ("orders-api", f"{POD_IP}:{api_port}", "orders-depl-0"),
        ("orders-worker", f"{POD_IP}:{worker_port}", "orders-worker-depl-0"),
    }
    assert {t["labels"]["namespace"] for t in targets} == {"default"}
    # Every other pod, container and port (NATS, PostgreSQL, the init containers) is dropped by both jobs.
    dropped = observed_service.api_v1("targets", state="dropped")["droppedTargets"]
    assert len(dropped) == 2 * len(observed_service.pod_targets) - 2


def test_the_rules_load_and_evaluate_without_errors(observed_service) -> None:
    wait_for_targets_up(observed_service)
    wait_for_rule_evaluations(observed_service, 3)
    groups = observed_service.api_v1("rules", type="alert")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {rule["alert"] for rule in alerting_rules()}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))
        assert not rule.get("lastError"), name
    failures = observed_service.prometheus_samples("prometheus_rule_evaluation_failures_total")
    assert len(failures) == len({group["name"] for group in yaml.safe_load(RULES.read_text())["groups"]})
    assert [value for _, value in failures] == [0] * len(failures)


def test_every_series_the_rules_use_is_scraped(observed_service) -> None:
    wait_for_targets_up(observed_service)
    for name in sorted(set().union(*(metric_names(rule["expr"]) for rule in alerting_rules()))):

        def scraped(name: str = name) -> bool:
            found = bool(observed_service.api_v1("series", **{"match[]": name}))
            if not found:
                time.sleep(0.2)
            return found

        wait_until(scraped, timeout=30, message=f"a series of {name}")
    # The series the readiness alert divides by: the probes' /readyz answers.
    assert observed_service.api_v1(
        "series",
        **{"match[]": 'django_http_responses_total_by_status_view_method_total{job="orders-api", view="readyz"}'},
    )


def firing_or_pending(observed: ObservedService) -> dict[str, str]:
    return {alert["labels"]["alertname"]: alert["state"] for alert in observed.api_v1("alerts")["alerts"]}


def test_a_healthy_service_raises_no_alert_and_a_failed_event_does(observed_service) -> None:
    wait_for_targets_up(observed_service)
    # Rules evaluated after the first scrapes: nothing is pending, let alone firing.
    wait_for_rule_evaluations(observed_service, 3)
    assert firing_or_pending(observed_service) == {}

    # An event that can never be applied is set aside: the worker's gauge, scraped and evaluated.
    bad_ticket = {"id": "not-an-object-id", "version": 0, "title": "concert", "price": 20, "userId": "x"}
    observed_service.bus.publish_all([("ticket:created", bad_ticket, "alerts-bad-ticket")])

    def failed_event_alert_pending() -> bool:
        pending = firing_or_pending(observed_service).get("OrdersFailedEventsOpen") == "pending"
        if not pending:
            time.sleep(0.2)
        return pending

    wait_until(failed_event_alert_pending, timeout=60, message="OrdersFailedEventsOpen to be pending")
    assert set(firing_or_pending(observed_service)) == {"OrdersFailedEventsOpen"}
