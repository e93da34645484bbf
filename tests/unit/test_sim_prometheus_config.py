"""The simulated lab's config writer (roles/sim_cluster/files/prometheus_config_sync.py): the
operator's configuration as a Prometheus process of this machine runs it, and the files it
keeps current. The whole path runs for real in tests/integration/test_lab_prometheus.py."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import load_tool

sync = load_tool("prometheus_config_sync", "roles/sim_cluster/files")

GENERATED = """\
global:
  external_labels:
    prometheus_replica: $(POD_NAME)
rule_files:
- /etc/prometheus/rules/prometheus-lab-prometheus-rulefiles-0/*.yaml
scrape_configs:
- job_name: serviceMonitor/monitoring/lab-kubelet/0
  kubernetes_sd_configs:
  - role: endpoints
    namespaces: {names: [kube-system]}
  bearer_token_file: /var/run/secrets/kubernetes.io/serviceaccount/token
  tls_config: {ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt}
  relabel_configs:
  - {source_labels: [__tmp_hash, __tmp_disable_sharding], regex: $(SHARD);|.+;.+, action: keep}
- job_name: elsewhere
  kubernetes_sd_configs:
  - {role: pod, api_server: https://other:6443}
"""


def test_the_operators_configuration_as_this_machine_runs_it(tmp_path: Path) -> None:
    rules, account = tmp_path / "rules", tmp_path / "serviceaccount"
    cfg = yaml.safe_load(
        sync.expanded(GENERATED, "prometheus-lab-prometheus-0", "https://10.41.0.1:16443",
                      (rules, account))
    )  # fmt: skip
    assert cfg["global"]["external_labels"]["prometheus_replica"] == "prometheus-lab-prometheus-0"
    assert cfg["rule_files"] == [f"{rules}/prometheus-lab-prometheus-rulefiles-0/*.yaml"]
    kubelet, elsewhere = cfg["scrape_configs"]
    assert kubelet["bearer_token_file"] == f"{account}/token"
    assert kubelet["tls_config"]["ca_file"] == f"{account}/ca.crt"
    assert kubelet["relabel_configs"][0]["regex"] == "0;|.+;.+"  # the one shard
    assert kubelet["kubernetes_sd_configs"] == [
        {
            "role": "endpoints",
            "namespaces": {"names": ["kube-system"]},
            "api_server": "https://10.41.0.1:16443",
            "authorization": {"credentials_file": f"{account}/token"},
            "tls_config": {"ca_file": f"{account}/ca.crt"},
        }
    ]
    # discovery the operator pointed elsewhere is left as it is
    assert elsewhere["kubernetes_sd_configs"] == [
        {"role": "pod", "api_server": "https://other:6443"}
    ]


def test_files_are_written_when_they_change_and_stale_rules_go(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    token = tmp_path / "serviceaccount" / "token"
    first = {tmp_path / "prometheus.yaml": "a", token: "secret", rules / "cm-0" / "x.yaml": "r"}
    assert sync.apply(first, rules) is True
    assert oct(token.stat().st_mode & 0o777) == "0o600"
    assert oct(token.parent.stat().st_mode & 0o777) == "0o700"
    assert sync.apply(first, rules) is False  # nothing changed: no reload
    second = {tmp_path / "prometheus.yaml": "a", token: "secret", rules / "cm-1" / "y.yaml": "s"}
    assert sync.apply(second, rules) is True
    assert sorted(p.relative_to(rules).as_posix() for p in rules.rglob("*")) == [
        "cm-1",
        "cm-1/y.yaml",
    ]
