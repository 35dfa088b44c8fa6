"""deploy/grafana/orders-dashboard.json: panels for every alerted signal, request rate and latency, each
expression valid on a real Prometheus and naming only metrics a real scrape of the API and worker exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import PROMETHEUS_DIR, ObservedService, exported_names
from tests.deploy.promql import metric_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "orders-dashboard.json"
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = {"up"}
# What Grafana puts in place of its variables, for running an expression outside Grafana.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def panels() -> list[dict]:
    dashboard = json.loads(DASHBOARD.read_text())
    flat = []
    for panel in dashboard["panels"]:
        flat.append(panel)
        flat.extend(panel.get("panels", []))
    return [panel for panel in flat if panel["type"] != "row"]


def expressions() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in panels() for target in panel["targets"]]


def dashboard_metric_names() -> set[str]:
    return set().union(*(metric_names(expr) for _, expr in expressions()))


def as_prometheus_query(expr: str) -> str:
    return re.sub(r"\$__\w+", lambda m: GRAFANA_VARIABLES[m[0]], expr)


def test_the_dashboard_is_importable_json_on_a_chosen_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    (variable,) = dashboard["templating"]["list"]
    assert (variable["type"], variable["query"], variable["name"]) == ("datasource", "prometheus", "datasource")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"]), panel["title"]
        assert panel["description"], panel["title"]


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_every_alerted_signal_and_request_rate_and_latency_have_panels() -> None:
    rules = [
        rule
        for group in yaml.safe_load((PROMETHEUS_DIR / "orders-alerts.yaml").read_text())["groups"]
        for rule in group["rules"]
    ]
    alerted = set().union(*(metric_names(rule["expr"]) for rule in rules))
    shown = dashboard_metric_names()
    assert alerted <= shown
    assert {
        "django_http_responses_total_by_status_view_method_total",
        "django_http_requests_latency_seconds_by_view_method_bucket",
    } <= shown


@pytest.fixture(scope="module")
def exposed(observed_service: ObservedService) -> set[str]:
    """Every series name the running API and worker expose, and the ones Prometheus adds."""
    names = exported_names(observed_service.scrape(observed_service.api))
    names |= exported_names(observed_service.scrape(observed_service.worker))
    return names | PROMETHEUS_SERIES


def test_the_dashboard_names_only_metrics_the_service_exports(exposed) -> None:
    unknown = {(title, name) for title, expr in expressions() for name in metric_names(expr) if name not in exposed}
    assert unknown == set()


def test_the_export_check_catches_a_misspelled_metric(exposed) -> None:
    assert metric_names('sum(rate(orders_worker_event_total{subject="ticket:created"}[5m]))') - exposed == {
        "orders_worker_event_total"
    }


def test_every_panel_expression_runs_on_prometheus(observed_service: ObservedService) -> None:
    for title, expr in expressions():
        answer = observed_service.api_v1("query", query=as_prometheus_query(expr))
        assert answer["resultType"] in ("vector", "scalar", "matrix"), (title, expr)
