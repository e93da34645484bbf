"""The six Grafana dashboards: valid documents, the expected variables, committed as generated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nuclab.observability.dashboards import all_dashboards, render
from nuclab.observability.queries import dashboard_expressions, logql_problems

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "roles/monitoring/files/dashboards"
DASHBOARDS = all_dashboards()
PANEL_TYPES = {"timeseries", "stat", "table", "logs"}


def test_there_are_the_six_dashboards_of_the_issue() -> None:
    assert sorted(DASHBOARDS) == sorted(
        [
            "experiments",
            "experiment-logs",
            "physical-cluster",
            "kubernetes-cluster",
            "energy",
            "peer-latency",
        ]
    )
    assert len({d["uid"] for d in DASHBOARDS.values()}) == 6


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_committed_json_is_what_the_generator_writes(name: str) -> None:
    path = COMMITTED / f"nuclab-{name}.json"
    assert path.read_text() == render(DASHBOARDS[name]), (
        f"{path} is stale: python -m nuclab.observability.dashboards {COMMITTED.relative_to(REPO)}"
    )


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_is_a_valid_grafana_document(name: str) -> None:
    doc: dict[str, Any] = json.loads((COMMITTED / f"nuclab-{name}.json").read_text())
    for key in ("uid", "title", "panels", "templating", "schemaVersion", "time"):
        assert key in doc, f"{name}: no {key}"
    assert len(doc["uid"]) <= 40 and doc["schemaVersion"] >= 36
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
    for panel in doc["panels"]:
        grid = panel["gridPos"]
        assert panel["type"] in PANEL_TYPES
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), f"{name}/{panel['title']}: refIds"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in {"prometheus", "loki"}
            assert target["expr"].strip()


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_has_experiment_peer_and_node_variables(name: str) -> None:
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    assert set(variables) == {"experiment", "peer", "node"}
    assert not variables["experiment"]["multi"] and not variables["experiment"]["includeAll"]
    assert variables["peer"]["includeAll"] and variables["peer"]["allValue"] == ".*"
    assert "$experiment" in variables["peer"]["query"]["query"], "peers must follow the experiment"
    assert variables["node"]["includeAll"]


def test_every_experiment_panel_uses_the_experiment_variable() -> None:
    """Panels about experiments select one: no experiment panel without $experiment."""
    for doc in DASHBOARDS.values():
        for expr in dashboard_expressions(doc):
            if expr.kind == "panel" and ("nuclab:pod_" in expr.expr or "nuclab_peer_" in expr.expr):
                assert 'experiment="$experiment"' in expr.expr, expr.source


LOGQL = [e for d in DASHBOARDS.values() for e in dashboard_expressions(d) if e.language == "logql"]


@pytest.mark.parametrize("expr", LOGQL, ids=lambda e: e.source)
def test_logql_selects_the_experiment_stream(expr: Any) -> None:
    assert logql_problems(expr.expr) == [], expr.expr


def test_logql_check_catches_a_query_without_the_experiment() -> None:
    assert logql_problems('{pod=~"$peer"} |= `x`')
    assert logql_problems('count_over_time({experiment="$experiment"} [5m]')


def test_logs_dashboard_counts_sending_at_lines_and_levels() -> None:
    text = json.dumps(DASHBOARDS["experiment-logs"])
    for needle in ("sending at", "INFO", "ERROR", "nuclab_peer_messages_received_total"):
        assert needle in text
