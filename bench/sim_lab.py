"""Benchmark: wall time of site.yml on the simulated lab, first run and idempotent re-run.

For the 6-node sample (inventory/sim) and a generated lab of N nodes (default 100), each run
starts from a clean lab (sim_down first). Prints a table of medians; with --tools, also times
`tools/setup.sh`'s Go build from an empty cache (empty Go build and module caches too, as on a
fresh machine: this takes 10+ minutes and downloads the modules from the Go module proxy).

    .venv/bin/python bench/sim_lab.py [--nodes 6,100] [--runs 3] [--tools]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from nuclab import paths

REPO = Path(__file__).resolve().parents[1]
SIM = REPO / "inventory" / "sim"
VENV_BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    cache = paths.cache_dir()
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "PATH": f"{VENV_BIN}:{cache / 'tools' / 'bin'}:{os.environ['PATH']}",
    }


def generated_inventory(root: Path, nodes: int, real: int = 0) -> Path:
    """A lab of one server and nodes-1 agents (one client per ten), in two zones; the first
    ``real`` workers are real nodes (sim_node_kind: real), the rest kwok."""
    inv = root / f"lab-{nodes}"
    shutil.copytree(SIM / "group_vars", inv / "group_vars")
    agents: dict[str, dict[str, str]] = {
        f"node-{i:03d}": {
            "lab_role": "client" if i % 10 == 1 else "worker",
            "lab_zone": "zone-a" if i % 2 else "zone-b",
            "lab_telemetry_mode": "cpu",
        }
        for i in range(1, nodes)
    }
    workers = [name for name, host in agents.items() if host["lab_role"] == "worker"]
    for name in workers[:real]:
        agents[name]["sim_node_kind"] = "real"
    hosts = yaml.safe_load((SIM / "hosts.yml").read_text())
    hosts["k3s_cluster"]["children"]["agent"]["hosts"] = agents
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    return inv


def playbook(inventory: Path, name: str) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), name],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"{name} on {inventory} failed:\n{proc.stdout[-4000:]}")
    changed = re.search(r"^localhost\s+:.*changed=(\d+)", proc.stdout, re.M)
    return elapsed, changed.group(1) if changed else "?"


def bench_lab(inventory: Path, runs: int) -> dict[str, object]:
    first, again, changes = [], [], set()
    for _ in range(runs):
        playbook(inventory, "playbooks/sim_down.yml")
        seconds, _ = playbook(inventory, "site.yml")
        first.append(seconds)
        seconds, changed = playbook(inventory, "site.yml")
        again.append(seconds)
        changes.add(changed)
    playbook(inventory, "playbooks/sim_down.yml")
    return {
        "first": statistics.median(first),
        "again": statistics.median(again),
        "changed": ",".join(sorted(changes)),
        "runs": runs,
    }


def bench_tools() -> float:
    with tempfile.TemporaryDirectory(prefix="nuclab-tools-") as tmp:
        tmp_path = Path(tmp)
        build_env = {
            **os.environ,
            "NUCLAB_CACHE": str(tmp_path / "cache"),
            "GOCACHE": str(tmp_path / "gocache"),
            "GOMODCACHE": str(tmp_path / "gomodcache"),
        }
        start = time.monotonic()
        subprocess.run(["bash", str(REPO / "tools" / "setup.sh")], env=build_env, check=True)
        elapsed = time.monotonic() - start
        subprocess.run(["chmod", "-R", "u+w", str(tmp_path)], check=False)
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="6,100", help="lab sizes; 6 is inventory/sim")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--tools", action="store_true", help="also time the tools from an empty cache"
    )
    args = parser.parse_args()

    print(
        f"{'nodes':>6} {'first run s':>12} {'re-run s':>10} {'ratio':>6} "
        f"{'re-run changed':>15} runs"
    )
    with tempfile.TemporaryDirectory(prefix="nuclab-bench-") as tmp:
        for size in (int(n) for n in args.nodes.split(",")):
            inventory = SIM if size == 6 else generated_inventory(Path(tmp), size)
            r = bench_lab(inventory, args.runs)
            print(
                f"{size:>6} {r['first']:>12.1f} {r['again']:>10.1f} "
                f"{r['again'] / r['first']:>6.2f} {r['changed']:>15} {r['runs']}",
                flush=True,
            )
    if args.tools:
        print(f"tools from an empty cache: {bench_tools():.0f} s")


if __name__ == "__main__":
    main()
