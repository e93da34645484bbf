"""The isolation proof: every query nuclab ships selects one experiment's data, and only it.

A real Prometheus (Debian package) on loopback scrapes local exporters that expose what the
cluster would give two experiments, purple and blue (cAdvisor, kube-state-metrics, Kepler, node
exporter, the peers' metrics with the PodMonitor's relabeling, node RTT through a real
Pushgateway), and evaluates nuclab's recording rules. A second Prometheus scrapes a world where
purple runs alone. For every dashboard and rule expression selecting purple:

* it parses and returns data;
* every experiment / pod / source / target label of the result belongs to purple;
* its result equals the purple-only server's: blue's series change nothing.

Counters grow linearly with wall-clock time, so both servers compute the same rates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from nuclab.observability.dashboards import all_dashboards
from nuclab.observability.queries import (
    Expression,
    dashboard_expressions,
    instantiate,
    label_values,
    rule_expressions,
)
from nuclab.observability.values import render_values
from tests.harness.prometheus import Prometheus, Pushgateway
from tests.harness.simlab import Exporter, World, scrape_config

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "roles/monitoring/files/rules/nuclab.rules.yml"
NODES = ["nuc-master", "nuc-1", "nuc-2", "nuc-3", "nuc-4", "nuc-5"]
EXPERIMENTS = {"purple": 3, "blue": 2}
GRAFANA = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m", "__range_s": "300"}
REL_TOLERANCE = 0.02
RULE_WINDOW = 120  # seconds: the rules rate over [2m]


def _world(experiments: dict[str, int]) -> World:
    return World(nodes=NODES, experiments=experiments, not_ready={"nuc-5"}, pending={"blue": 1})


@dataclass
class Lab:
    both: Prometheus  # purple and blue
    purple_only: Prometheus
    world: World

    def pods(self, experiment: str) -> set[str]:
        return {p.name for p in self.world.experiment_pods(experiment)}


def _push_node_rtt(gateway: str) -> None:
    registry = CollectorRegistry()
    rtt = Gauge(
        "nuclab_node_rtt_seconds",
        "Node-to-node RTT percentiles",
        ["origin", "destination", "quantile"],
        registry=registry,
    )
    for i, origin in enumerate(NODES):
        for j, destination in enumerate(NODES):
            if origin != destination:
                for q, factor in (("0.5", 1.0), ("0.9", 1.3), ("0.99", 1.6)):
                    rtt.labels(origin, destination, q).set((400 + 10 * i + j) * factor / 1e6)
    push_to_gateway(gateway, job="netperf", registry=registry)


def _wait_for_data(servers: list[Prometheus], started: float, timeout: float = 60) -> None:
    """Until every target is up and the rules' [2m] windows are full of samples.

    With full windows a rate is exact (no extrapolation from a partial window), so two servers
    started a second apart compute the same values.
    """
    for prom in servers:
        deadline = time.monotonic() + timeout
        while prom.targets_up()[0] != prom.targets_up()[1] or not prom.query(
            "nuclab:experiment_messages_sent:rate2m"
        ):
            if time.monotonic() > deadline:
                raise AssertionError(f"{prom.url}: targets up {prom.targets_up()} after {timeout}s")
            time.sleep(0.5)
    time.sleep(max(0.0, started + RULE_WINDOW + 8 - time.monotonic()))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return render_values(tmp_path_factory.mktemp("values"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, rendered: dict[str, Any]) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("promlab")
    podmonitor = rendered["podmonitor-nuclab-experiments.yaml"]["spec"]["podMetricsEndpoints"][0]
    monitor = rendered["kube-prometheus-stack.yaml"]["prometheus-node-exporter"]["prometheus"][
        "monitor"
    ]
    stoppers: list[Any] = []
    try:
        gateway = Pushgateway(tmp / "pushgateway")
        stoppers.append(gateway.stop)
        _push_node_rtt(gateway.address)
        servers = []
        started = time.monotonic()
        for name, experiments in (("both", EXPERIMENTS), ("purple-only", {"purple": 3})):
            exporter = Exporter(_world(experiments))
            stoppers.append(exporter.close)
            config = scrape_config(
                exporter,
                peer_relabelings=podmonitor["relabelings"],
                peer_metric_relabelings=podmonitor["metricRelabelings"],
                node_exporter_relabelings=monitor["relabelings"],
                pushgateway=gateway.address,
                rule_files=[str(RULES)],
            )
            prom = Prometheus(tmp / name, config)
            stoppers.append(prom.stop)
            servers.append(prom)
        _wait_for_data(servers, started)
        yield Lab(servers[0], servers[1], _world(EXPERIMENTS))
    finally:
        for stop in reversed(stoppers):
            stop()


def _dashboard_exprs(kind: str, language: str = "promql") -> list[Expression]:
    out = []
    for doc in all_dashboards().values():
        out += [e for e in dashboard_expressions(doc) if e.kind == kind and e.language == language]
    return out


PANELS = _dashboard_exprs("panel")
EXPERIMENT_PANELS = [e for e in PANELS if "experiment" in e.variables]
OTHER_PANELS = [e for e in PANELS if "experiment" not in e.variables]
RECORDS = [e for e in rule_expressions(RULES) if e.kind == "record"]
ALERTS = [e for e in rule_expressions(RULES) if e.kind == "alert"]


def _values(experiment: str, peer: str = ".*", node: str = ".*") -> dict[str, str]:
    return {"experiment": experiment, "peer": peer, "node": node, **GRAFANA}


def _key(series: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(series["metric"].items()))


def _value(series: dict[str, Any]) -> float:
    return float(series["value"][1])


def _assert_only(result: list[dict[str, Any]], experiment: str, pods: set[str], what: str) -> None:
    for series in result:
        labels = series["metric"]
        if "experiment" in labels:
            assert labels["experiment"] == experiment, f"{what}: {labels} is not {experiment}'s"
        for label in ("pod", "source", "target"):
            if label in labels:
                assert labels[label] in pods, (
                    f"{what}: {label}={labels[label]} is not a {experiment} peer"
                )


def _assert_same(a: list[dict[str, Any]], b: list[dict[str, Any]], what: str) -> None:
    left, right = {_key(s): _value(s) for s in a}, {_key(s): _value(s) for s in b}
    assert left.keys() == right.keys(), (
        f"{what}: series differ with blue present: {left.keys() ^ right.keys()}"
    )
    for key, value in left.items():
        other = right[key]
        if math.isnan(value) and math.isnan(other):
            continue
        assert math.isclose(value, other, rel_tol=REL_TOLERANCE, abs_tol=1e-9), (
            f"{what}: {dict(key)} = {value} with blue present, {other} without"
        )


@pytest.mark.parametrize("expr", EXPERIMENT_PANELS, ids=lambda e: e.source)
def test_experiment_panel_returns_the_selected_experiment_only(lab: Lab, expr: Expression) -> None:
    at = time.time()
    purple = instantiate(expr.expr, _values("purple"))
    result = lab.both.query(purple, at)
    assert result, f"{expr.source}: no data for purple: {purple}"
    _assert_only(result, "purple", lab.pods("purple"), expr.source)
    _assert_same(result, lab.purple_only.query(purple, at), expr.source)

    blue = lab.both.query(instantiate(expr.expr, _values("blue")), at)
    assert blue, f"{expr.source}: no data for blue"
    _assert_only(blue, "blue", lab.pods("blue"), expr.source)


@pytest.mark.parametrize(
    "expr", [e for e in EXPERIMENT_PANELS if "peer" in e.variables], ids=lambda e: e.source
)
def test_peer_variable_narrows_to_one_peer(lab: Lab, expr: Expression) -> None:
    peer = sorted(lab.pods("purple"))[0]
    result = lab.both.query(instantiate(expr.expr, _values("purple", peer=peer)))
    assert result, f"{expr.source}: no data for peer {peer}"
    _assert_only(result, "purple", lab.pods("purple"), expr.source)
    for series in result:  # the peer's own series; targets of its probes are other peers
        for label in ("pod", "source"):
            assert series["metric"].get(label, peer) == peer, f"{expr.source}: {series['metric']}"


@pytest.mark.parametrize("expr", OTHER_PANELS, ids=lambda e: e.source)
def test_cluster_panel_returns_data_for_the_selected_node(lab: Lab, expr: Expression) -> None:
    node = NODES[0]
    result = lab.both.query(instantiate(expr.expr, _values("purple", node=node)))
    assert result, f"{expr.source}: no data for node {node}"
    if "node" in expr.variables:
        for series in result:
            for label in ("node", "origin", "node_name"):
                if label in series["metric"]:
                    assert series["metric"][label] == node, f"{expr.source}: {series['metric']}"


@pytest.mark.parametrize("expr", _dashboard_exprs("variable"), ids=lambda e: e.source)
def test_dashboard_variable_selects_something(lab: Lab, expr: Expression) -> None:
    selector, label = label_values(instantiate(expr.expr, _values("purple")))
    params = {"match[]": selector} if selector else {}
    values = lab.both.api(f"label/{label}/values", **params)
    assert values, f"{expr.source}: {expr.expr} selects nothing"
    if label == "experiment":
        assert sorted(values) == sorted(EXPERIMENTS)
    if label == "pod":
        assert set(values) == lab.pods("purple")


@pytest.mark.parametrize("expr", RECORDS, ids=lambda e: e.source)
def test_recording_rule_keeps_experiments_apart(lab: Lab, expr: Expression) -> None:
    name = expr.source.split(" / ")[1]
    everything = lab.both.query(name)
    assert everything, f"{name}: no data"
    if not any("experiment" in s["metric"] for s in everything):
        return  # a lab-service or node series: no experiment to isolate
    at = time.time()
    purple = lab.both.query(f'{name}{{experiment="purple"}}', at)
    assert {s["metric"]["experiment"] for s in everything} == set(EXPERIMENTS)
    _assert_only(purple, "purple", lab.pods("purple"), name)
    _assert_same(purple, lab.purple_only.query(name, at), name)


def test_alerts_fire_for_what_is_wrong_only(lab: Lab) -> None:
    """blue has a peer Pending, nuc-5 is not Ready: the alert expressions name exactly those."""
    by_name = {e.source.split(" / ")[1]: e.expr for e in ALERTS}
    peers = lab.both.query(by_name["NuclabExperimentPeersNotRunning"])
    assert [(s["metric"]["experiment"], _value(s)) for s in peers] == [("blue", 1.0)]
    assert lab.purple_only.query(by_name["NuclabExperimentPeersNotRunning"]) == []
    down = lab.both.query(by_name["NuclabNodeDown"])
    assert [s["metric"]["node"] for s in down] == ["nuc-5"]
    for name in ("NuclabPrometheusStorageNearlyFull", "NuclabPrometheusRetentionSizeNearlyReached"):
        assert lab.both.query(by_name[name]) == [], f"{name} fires on an empty Prometheus"


def test_storage_alert_inputs_exist_in_a_real_prometheus(lab: Lab) -> None:
    """The retention alert reads Prometheus' own TSDB series: they must exist under these names."""
    assert lab.both.query("prometheus_tsdb_storage_blocks_bytes")
    assert lab.both.query("prometheus_tsdb_retention_limit_bytes")
