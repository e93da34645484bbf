"""The chart values the roles render (through Ansible's templating) and their preflight checks.

The charts themselves cannot be fetched on this machine; these tests check the values files
against the keys of the pinned charts (kube-prometheus-stack 88, prometheus-pushgateway 3,
Loki 18 of grafana-community, Alloy 1, Kepler 0.11).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nuclab.observability.values import render_values, run_values


@pytest.fixture(scope="module")
def values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return render_values(tmp_path_factory.mktemp("render"))


def test_every_values_file_is_rendered(values: dict[str, Any]) -> None:
    assert set(values) == {
        "kube-prometheus-stack.yaml",
        "prometheus-pushgateway.yaml",
        "podmonitor-nuclab-experiments.yaml",
        "podmonitor-nuclab-net-agent.yaml",
        "loki.yaml",
        "alloy.yaml",
        "config.alloy",
        "kepler-cpu.yaml",  # the sim inventory has cpu and gpu nodes
        "kepler-gpu.yaml",
    }


def test_kube_prometheus_stack_fits_k3s(values: dict[str, Any]) -> None:
    kps = values["kube-prometheus-stack.yaml"]
    assert kps["kubeControllerManager"]["enabled"] is True
    assert kps["kubeControllerManager"]["jobNameOverride"] == "k3s-server"
    assert kps["kubeScheduler"]["enabled"] is False, "K3s serves the same metrics: scrape once"
    assert kps["kubeProxy"]["enabled"] is False
    assert kps["kubeEtcd"]["enabled"] is False, "etcd only when monitoring_etcd_metrics"
    spec = kps["prometheus"]["prometheusSpec"]
    for key in (
        "serviceMonitorSelectorNilUsesHelmValues",
        "podMonitorSelectorNilUsesHelmValues",
        "ruleSelectorNilUsesHelmValues",
        "probeSelectorNilUsesHelmValues",
        "scrapeConfigSelectorNilUsesHelmValues",
    ):
        assert spec[key] is False, key
    assert spec["retention"] == "15d"
    assert spec["retentionSize"] == "17408MB", "85% of the 20Gi volume"
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "20Gi"
    assert spec["resources"]["requests"]["memory"] and spec["resources"]["limits"]["memory"]
    # The controller reaches Prometheus on a NodePort (nuclab export, export before delete).
    assert kps["prometheus"]["service"] == {"type": "NodePort", "nodePort": 30090}
    assert kps["kube-state-metrics"]["metricLabelsAllowlist"][0] == "pods=[nuclab.io/experiment]"
    grafana = kps["grafana"]
    assert grafana["admin"] == {
        "existingSecret": "grafana-admin",
        "userKey": "admin-user",
        "passwordKey": "admin-password",
    }
    assert "adminPassword" not in grafana
    assert grafana["sidecar"]["dashboards"]["label"] == "grafana_dashboard"


def test_pushgateway_keeps_pushed_labels(values: dict[str, Any]) -> None:
    gw = values["prometheus-pushgateway.yaml"]
    assert gw["serviceMonitor"] == {"enabled": True, "namespace": "monitoring", "honorLabels": True}


def test_podmonitor_labels_targets_with_the_experiment(values: dict[str, Any]) -> None:
    pm = values["podmonitor-nuclab-experiments.yaml"]
    assert pm["kind"] == "PodMonitor"
    endpoints = pm["spec"]["podMetricsEndpoints"]
    # the peer's port and the probe sidecar's, relabelled alike
    assert [e["port"] for e in endpoints] == ["metrics", "probe-metrics"]
    for endpoint in endpoints:
        assert {
            "sourceLabels": ["__meta_kubernetes_pod_label_nuclab_io_experiment"],
            "targetLabel": "experiment",
        } in endpoint["relabelings"]
        assert endpoint["relabelings"] == endpoints[0]["relabelings"]
        assert endpoint["metricRelabelings"] == endpoints[0]["metricRelabelings"]


def test_the_podmonitor_follows_the_inventorys_experiment_namespace(
    values: dict[str, Any], tmp_path: Path
) -> None:
    # the operator's namespace and each research group's (inventory/sim's lab_groups)
    groups = ["nuclab-alpha", "nuclab-beta"]
    assert values["podmonitor-nuclab-experiments.yaml"]["spec"]["namespaceSelector"] == {
        "matchNames": ["nuclab", *groups]
    }
    team = render_values(tmp_path, extra_vars={"experiment_namespace": "nuclab-team-t"})
    selector = team["podmonitor-nuclab-experiments.yaml"]["spec"]["namespaceSelector"]
    assert selector == {"matchNames": ["nuclab-team-t", *groups]}


def test_loki_is_monolithic_on_the_filesystem(values: dict[str, Any]) -> None:
    loki = values["loki.yaml"]
    assert loki["deploymentMode"] == "Monolithic"
    assert loki["loki"]["storage"]["type"] == "filesystem"
    assert loki["loki"]["commonConfig"]["replication_factor"] == 1
    assert loki["singleBinary"]["replicas"] == 1 and loki["singleBinary"]["persistence"]["enabled"]
    assert all(loki[c]["replicas"] == 0 for c in ("backend", "read", "write"))
    assert loki["loki"]["limits_config"]["retention_period"] == "168h"


def test_alloy_maps_the_experiment_pod_label_to_a_stream_label(values: dict[str, Any]) -> None:
    """No alloy binary is built here: the configuration is checked as text."""
    river = values["config.alloy"]
    assert values["alloy.yaml"]["alloy"]["configMap"]["content"] == river
    assert values["alloy.yaml"]["controller"]["type"] == "daemonset"
    rule = (
        'source_labels = ["__meta_kubernetes_pod_label_nuclab_io_experiment"]\n'
        '    target_label  = "experiment"'
    )
    assert rule in river
    assert river.count("{") == river.count("}")
    for block in (
        "discovery.kubernetes",
        "discovery.relabel",
        "loki.source.kubernetes",
        "loki.write",
    ):
        assert f'{block} "' in river
    assert "promtail" not in river.lower()


def test_kepler_runs_per_telemetry_mode(values: dict[str, Any]) -> None:
    cpu, gpu = values["kepler-cpu.yaml"], values["kepler-gpu.yaml"]
    assert cpu["daemonset"]["nodeSelector"] == {"nuclab.io/telemetry": "cpu"}
    assert gpu["daemonset"]["nodeSelector"] == {"nuclab.io/telemetry": "gpu"}
    assert cpu["config"]["experimental"]["gpu"]["enabled"] is False
    assert gpu["config"]["experimental"]["gpu"]["enabled"] is True


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("monitoring_prometheus_retention", "15days", "Prometheus duration"),
        ("monitoring_prometheus_volume_size", "20GB", "whole number of Mi, Gi or Ti"),
        ("monitoring_prometheus_retention_size", "lots", "Prometheus size"),
        ("monitoring_chart_source", "ftp", "repo"),
        ("logging_loki_volume_size", "ten", "whole number of Mi, Gi or Ti"),
        ("logging_loki_retention", "a week", "duration"),
        ("kepler_telemetry_modes", ["cpu", "rapl"], "telemetry modes"),
        ("monitoring_prometheus_node_port", 9090, "30000 to 32767"),
    ],
)
def test_bad_input_is_rejected_naming_the_variable(
    tmp_path: Path, variable: str, value: object, allowed: str
) -> None:
    proc = run_values(tmp_path, extra_vars={variable: value})
    assert proc.returncode != 0
    assert variable in proc.stdout and allowed in proc.stdout
    assert not (tmp_path / "artifacts" / "values").exists(), "preflight must stop before any change"


def test_prometheus_can_stay_inside_the_cluster(tmp_path: Path) -> None:
    values = render_values(tmp_path, extra_vars={"monitoring_prometheus_node_port": 0})
    assert "service" not in values["kube-prometheus-stack.yaml"]["prometheus"]


def test_unknown_node_telemetry_mode_is_rejected(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "k3s_cluster:\n  children:\n    server:\n      hosts:\n"
        "        nuc-master: {lab_telemetry_mode: cpu}\n"
        "    agent:\n      hosts:\n        nuc-1: {lab_telemetry_mode: turbo}\n"
    )
    proc = run_values(
        tmp_path,
        inventory=inventory,
        extra_vars={
            "lab_kepler_chart_version": "0.11.4",
            "lab_kube_prometheus_stack_chart_version": "x",
        },
    )
    assert proc.returncode != 0
    assert "lab_telemetry_mode of nuc-1: 'turbo'" in proc.stdout
