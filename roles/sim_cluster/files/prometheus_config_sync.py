"""The simulated lab's Prometheus configuration, as the Prometheus Operator generates it.

In a Prometheus pod, the kubelet mounts the operator's Secret ``prometheus-<name>``, its rule
ConfigMaps ``prometheus-<name>-rulefiles-<n>`` and the service account's token and CA, and the
config-reloader sidecar expands the configuration and tells Prometheus to reload. The simulated
lab runs Prometheus as a process of this machine, not as a pod, so this process does both, every
few seconds:

- writes the service account's token and CA (from its token Secret) where the configuration's
  ``/var/run/secrets/kubernetes.io/serviceaccount/`` paths now point;
- writes the generated configuration with ``$(POD_NAME)`` and ``$(SHARD)`` expanded (as the
  config-reloader does); each ``kubernetes_sd_configs`` entry gets the API server's address,
  which a pod's in-cluster client takes from its environment, with that token and CA;
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
from typing import Any

import yaml
from kubernetes import client, config

RULES_IN_POD = "/etc/prometheus/rules/"  # where the operator's StatefulSet mounts the rule files
ACCOUNT_IN_POD = "/var/run/secrets/kubernetes.io/serviceaccount/"  # and the kubelet the token


def _moved(value: Any, account_dir: Path) -> Any:
    """``value`` with every path into the pod's service account folder moved to ``account_dir``."""
    if isinstance(value, dict):
        return {k: _moved(v, account_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, account_dir) for v in value]
    if isinstance(value, str) and value.startswith(ACCOUNT_IN_POD):
        return f"{account_dir}/{value[len(ACCOUNT_IN_POD) :]}"
    return value


def expanded(generated: str, pod: str, api_server: str, dirs: tuple[Path, Path]) -> str:
    """The operator's configuration as this machine's Prometheus runs it (see the module's doc);
    ``dirs`` are the rule files' and the service account's folders."""
    rules_dir, account_dir = dirs
    cfg = yaml.safe_load(generated.replace("$(POD_NAME)", pod).replace("$(SHARD)", "0")) or {}
    cfg = _moved(cfg, account_dir)
    for job in cfg.get("scrape_configs") or []:
        for sd in job.get("kubernetes_sd_configs") or []:
            if "api_server" not in sd:  # in-cluster: the pod's service account
                sd["api_server"] = api_server
                sd["authorization"] = {"credentials_file": f"{account_dir}/token"}
                sd["tls_config"] = {"ca_file": f"{account_dir}/ca.crt"}
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
    rules_dir, account_dir = args.dir / "rules", args.dir / "serviceaccount"
    account = core.read_namespaced_secret(f"{args.name}-token", args.namespace).data or {}
    if not {"token", "ca.crt"} <= set(account):
        return None  # the token controller has not filled it yet
    files = {
        account_dir / key: base64.b64decode(account[key]).decode() for key in ("token", "ca.crt")
    }
    files[args.dir / "prometheus.yaml"] = expanded(
        gzip.decompress(base64.b64decode(data)).decode(),
        f"prometheus-{args.name}-0",
        args.api_server,
        (rules_dir, account_dir),
    )
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
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.touch(mode=0o600)  # the token among them
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
    parser.add_argument(
        "--name",
        required=True,
        help="the Prometheus resource's name, also its service account's (token: <name>-token)",
    )
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--reload-url", required=True)
    parser.add_argument("--api-server", required=True, help="the lab's API server, for discovery")
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
