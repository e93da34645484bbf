"""The simulated lab's Prometheus configuration, as the Prometheus Operator generates it.

In a Prometheus pod, the kubelet mounts the operator's Secret ``prometheus-<name>`` and its rule
ConfigMaps ``prometheus-<name>-rulefiles-<n>``, and the config-reloader sidecar expands the
configuration and tells Prometheus to reload. The simulated lab runs Prometheus as a process of
this machine, not as a pod, so this process does both, every few seconds:

- writes the generated configuration with ``$(POD_NAME)`` and ``$(SHARD)`` expanded (as the
  config-reloader does) and each ``kubernetes_sd_configs`` entry given the lab's kubeconfig,
  where a pod would use its service account (the one change to what the operator wrote);
- writes the rule files where the configuration's ``rule_files`` point, stale ones removed;
- asks Prometheus to reload (``POST /-/reload``) when a file changed.

Run by roles/sim_cluster (tasks/prometheus.yml) with the playbook's Python.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from kubernetes import client, config

RULES_IN_POD = "/etc/prometheus/rules/"  # where the operator's StatefulSet mounts the rule files


def expanded(generated: str, pod: str, kubeconfig: str, rules_dir: Path) -> str:
    """The operator's configuration as this machine's Prometheus runs it (see the module's doc)."""
    cfg = yaml.safe_load(generated.replace("$(POD_NAME)", pod).replace("$(SHARD)", "0")) or {}
    for job in cfg.get("scrape_configs") or []:
        for sd in job.get("kubernetes_sd_configs") or []:
            if "api_server" not in sd:
                sd["kubeconfig_file"] = kubeconfig
    cfg["rule_files"] = [
        f.replace(RULES_IN_POD, f"{rules_dir}/", 1) for f in cfg.get("rule_files") or []
    ]
    return yaml.safe_dump(cfg, sort_keys=False)


def wanted(core: client.CoreV1Api, args: argparse.Namespace) -> dict[Path, str] | None:
    """Every file Prometheus should read, by path; None until the operator wrote its Secret."""
    try:
        secret = core.read_namespaced_secret(f"prometheus-{args.name}", args.namespace)
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise
    data = (secret.data or {}).get("prometheus.yaml.gz")
    if not data:
        return None
    rules_dir = args.dir / "rules"
    files = {
        args.dir / "prometheus.yaml": expanded(
            gzip.decompress(base64.b64decode(data)).decode(),
            f"prometheus-{args.name}-0",
            args.kubeconfig,
            rules_dir,
        )
    }
    maps = core.list_namespaced_config_map(
        args.namespace, label_selector=f"managed-by=prometheus-operator,prometheus-name={args.name}"
    )
    for cm in maps.items:
        for key, text in (cm.data or {}).items():
            files[rules_dir / cm.metadata.name / key] = text
    return files


def apply(files: dict[Path, str], rules_dir: Path) -> bool:
    """Write what differs and remove stale rule files; whether anything changed."""
    changed = False
    for path, text in files.items():
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        changed = True
    if rules_dir.exists():
        for path in sorted(rules_dir.rglob("*"), reverse=True):
            if path.is_file() and path not in files:
                path.unlink()
                changed = True
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True, help="the Prometheus resource's name")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--reload-url", required=True)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    core = client.CoreV1Api(config.new_client_from_config(args.kubeconfig))
    pending = False  # a change Prometheus has not reloaded yet
    while True:
        try:
            files = wanted(core, args)
            if files is not None:
                pending = apply(files, args.dir / "rules") or pending
            if pending and (args.dir / "prometheus.yaml").exists():
                request = urllib.request.Request(args.reload_url, method="POST")
                with urllib.request.urlopen(request, timeout=10):
                    pending = False
                print("configuration written; Prometheus reloaded", flush=True)
        except Exception as err:  # the lab's API or Prometheus not up yet: try again
            print(f"waiting: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
