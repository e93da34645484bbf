"""The observability roles on the simulated lab: nuclab's own objects, applied idempotently.

The charts (kube-prometheus-stack, Pushgateway, Loki, Alloy, Kepler) are not installed here:
they cannot be fetched on this machine (no chart repository is reachable) and kwok runs no
containers. inventory/sim sets monitoring/logging/kepler_install_charts to false; what is
applied and checked is the namespace, the Grafana admin Secret, the dashboard ConfigMaps, the
rules (a PrometheusRule: the simulated lab runs the Prometheus Operator, roles/sim_cluster), the
experiments' PodMonitor and the Loki data source. test_lab_prometheus.py shows the lab's
Prometheus running them.
"""

from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.integration.conftest import SIM_INVENTORY, run_playbook

PASSWORD_FILE = SIM_INVENTORY / "artifacts" / "grafana-admin-password"
RULES = Path(__file__).resolve().parents[2] / "roles/monitoring/files/rules/nuclab.rules.yml"


def _changed(stdout: str) -> int:
    match = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", stdout)
    assert match, stdout[-2000:]
    return int(match.group(1))


@pytest.fixture(scope="module")
def applied(sim_lab: Path) -> dict[str, Any]:
    first = run_playbook("playbooks/monitoring.yml")
    second = run_playbook("playbooks/monitoring.yml")
    api = client.CoreV1Api(config.new_client_from_config(str(sim_lab)))
    return {"first": first.stdout, "second": second.stdout, "api": api}


def test_second_run_changes_nothing(applied: dict[str, Any]) -> None:
    assert _changed(applied["second"]) == 0, applied["second"][-3000:]


def _task_output(stdout: str, task: str) -> str:
    start = stdout.index(f"TASK [{task}]")
    end = stdout.find("TASK [", start + 1)
    return stdout[start : end if end > 0 else None]


@pytest.mark.parametrize(
    "task",
    [
        "monitoring : Install kube-prometheus-stack",
        "monitoring : Install the Pushgateway",
        "logging : Install Loki",
        "logging : Install Grafana Alloy",
        "kepler : Install Kepler for each telemetry mode",
    ],
)
def test_charts_are_not_installed_on_the_simulated_lab(applied: dict[str, Any], task: str) -> None:
    output = _task_output(applied["first"], task)
    assert "skipping" in output and "changed:" not in output and "ok:" not in output, output


def test_grafana_password_is_generated_private_and_in_a_secret(applied: dict[str, Any]) -> None:
    password = PASSWORD_FILE.read_text()
    assert stat.S_IMODE(PASSWORD_FILE.stat().st_mode) == 0o600
    assert len(password) >= 32 and password != "admin"
    secret = applied["api"].read_namespaced_secret("grafana-admin", "monitoring")
    assert base64.b64decode(secret.data["admin-password"]).decode() == password
    assert base64.b64decode(secret.data["admin-user"]).decode() == "admin"
    assert password not in applied["first"] and password not in applied["second"], "no_log"


def test_dashboards_are_configmaps_for_the_grafana_sidecar(applied: dict[str, Any]) -> None:
    maps = applied["api"].list_namespaced_config_map(
        "monitoring", label_selector="grafana_dashboard=1"
    )
    names = {m.metadata.name for m in maps.items}
    ours = {
        "nuclab-energy",
        "nuclab-experiment-logs",
        "nuclab-experiments",
        "nuclab-kubernetes-cluster",
        "nuclab-peer-latency",
        "nuclab-physical-cluster",
    }
    assert ours <= names
    # the only other dashboard in the namespace is the Kafka role's, when site.yml ran it
    assert names - ours <= {"nuclab-kafka"}
    for cm in maps.items:
        (key, text), *_ = cm.data.items()
        assert key == f"{cm.metadata.name}.json"
        assert json.loads(text)["uid"] == cm.metadata.name


def test_rules_podmonitor_and_loki_datasource_are_in_the_cluster(
    applied: dict[str, Any], sim_lab: Path
) -> None:
    custom = client.CustomObjectsApi(config.new_client_from_config(str(sim_lab)))

    def get(plural: str, name: str) -> dict[str, Any]:
        return custom.get_namespaced_custom_object(
            "monitoring.coreos.com", "v1", "monitoring", plural, name
        )

    assert get("prometheusrules", "nuclab")["spec"] == yaml.safe_load(RULES.read_text())
    endpoints = get("podmonitors", "nuclab-experiments")["spec"]["podMetricsEndpoints"]
    assert [e["port"] for e in endpoints] == ["metrics", "probe-metrics"]
    ds = applied["api"].read_namespaced_config_map("nuclab-loki-datasource", "monitoring")
    assert ds.metadata.labels["grafana_datasource"] == "1"
    assert yaml.safe_load(ds.data["loki-datasource.yaml"])["datasources"][0]["uid"] == "loki"


def test_bad_input_stops_before_any_change(applied: dict[str, Any]) -> None:
    proc = run_playbook(
        "playbooks/monitoring.yml",
        "-e",
        "monitoring_namespace=obs-bad-input",
        "-e",
        "logging_loki_volume_size=lots",
        check=False,
    )
    assert proc.returncode != 0
    assert "logging_loki_volume_size: 'lots'" in proc.stdout
    names = [n.metadata.name for n in applied["api"].list_namespace().items]
    assert "obs-bad-input" not in names
