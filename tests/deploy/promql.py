"""The metric names a PromQL expression selects, for checking rules and dashboards against a real scrape."""

from __future__ import annotations

import re

# PromQL's keywords and aggregation operators: identifiers that are never metric names.
KEYWORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
        "bool", "inf", "nan", "start", "end", "sum", "min", "max", "avg", "group", "stddev", "stdvar",
        "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)  # fmt: skip
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
NAME_MATCHER = re.compile(r'__name__\s*=\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier that does not continue a number or a duration (the `m` of `5m`, the `e3` of `1e3`).
IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Every metric name `expr` selects (`name{...}` or `{__name__="name"}`); Grafana's `$variables`
    are ignored. Not a parser: the live tests run each expression on Prometheus, which rejects one
    this reading would have misread."""
    names = set(NAME_MATCHER.findall(expr))
    text = GRAFANA_VARIABLE.sub(" ", expr)
    text = STRING.sub('""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = LABEL_LIST.sub(" ", text)
    for name, call in IDENTIFIER.findall(text):
        if not call and name not in KEYWORDS:
            names.add(name)
    return names
