"""The metric names read from PromQL: every selector's name, nothing else (functions, keywords, labels, durations)."""

from __future__ import annotations

import pytest

from tests.deploy.promql import metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="orders-api"} == 0', {"up"}),
        ('absent(up{job="orders-worker"} == 1)', {"up"}),
        (
            'sum by (job, namespace) (rate(a_total{status=~"5..", view!~"healthz|readyz"}[5m])) / sum by (job) (rate(a_total[5m])) > 0.05',
            {"a_total"},
        ),
        (
            "max without (instance, pod) (pending) > 0 unless on (subject) (sum by (subject) (rate(events_total[5m])) > 0)",
            {"pending", "events_total"},
        ),
        ("histogram_quantile(0.95, sum by (le, view) (rate(latency_bucket[$__rate_interval])))", {"latency_bucket"}),
        ("sum(x) by (le) / on (job) group_left (version) info_metric", {"x", "info_metric"}),
        ('count_values("value", build_info) offset 5m + 1e3 * rss_bytes / 2^20', {"build_info", "rss_bytes"}),
        ('{__name__="by_name", job="a"}', {"by_name"}),
        ('label_replace(y, "dst", "$1", "src", "(.*) and other_words")', {"y"}),
        ("rate(c_total[5m:30s]) and bool min_over_time(g[1h])", {"c_total", "g"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
