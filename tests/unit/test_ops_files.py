"""The shipped Prometheus alert rules and Grafana dashboard: they parse, and every metric they
name is one the consumer or the bridge exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import yaml

from consumer.metrics import ConsumerMetrics
from producer_tools.bridge.metrics import BridgeMetrics

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = {"up"}  # made by Prometheus itself for every scrape target
_NAME = re.compile(r"\b(?:ucs_[a-z0-9_]+|up)\b")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def exported() -> set[str]:
    """Every sample name the two processes can expose (`_total`, `_bucket`... included)."""
    names = set(BUILTIN)
    for registry in (ConsumerMetrics().registry, BridgeMetrics().registry):
        for family in registry.collect():
            names |= {sample.name for sample in family.samples}
            names.add(family.name)
            if family.type == "counter":
                names.add(f"{family.name}_total")
            if family.type == "histogram":
                names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
    return names


def metric_names(expression: str) -> set[str]:
    promql_parser.parse(expression)  # raises on a syntax error
    return set(_NAME.findall(_STRING.sub('""', expression)))


def test_the_alert_rules_parse_and_name_only_exported_metrics() -> None:
    rules = yaml.safe_load((ROOT / "ops/prometheus/alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in alerts}
    assert {
        "UcsTaskIdSpaceAbove90Percent",
        "UcsConsumerLagGrowing",
        "UcsDeadLettersAppearing",
        "UcsConsumerDown",
    } <= names
    known = exported()
    for rule in alerts:
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule['alert']} names unknown metrics {unknown}"
        assert rule["annotations"]["summary"]


def test_the_dashboard_parses_and_names_only_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "ops/grafana/ucs-tasks.json").read_text())
    targets = [t for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(targets) >= 10
    known = exported()
    for target in targets:
        unknown = metric_names(target["expr"]) - known
        assert not unknown, f"{target['expr']} names unknown metrics {unknown}"


def test_the_names_check_would_catch_a_misspelled_metric() -> None:
    assert metric_names("rate(ucs_consumer_event_total[1m])") - exported() == {
        "ucs_consumer_event_total"
    }
