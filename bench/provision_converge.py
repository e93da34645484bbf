"""Wall time of a first converge vs the idempotent re-run of playbooks/cluster.yml.

Runs the 3-host Molecule scenario k3s-agents (1 server + 2 agents, podman systemd hosts, K3s
test double in airgap mode) N times: fresh hosts each time (create + prepare, not timed), then
`molecule converge` twice, timed. Prints both medians and their ratio (goal: re-run < 0.5x).

    CONTAINERS_CONF=tools/containers.conf .venv/bin/python bench/provision_converge.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIO = "k3s-agents"


def _molecule(*args: str) -> float:
    venv_bin = REPO / ".venv" / "bin"
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(REPO / "tools" / "containers.conf"),
        # netavark (podman's network) runs iptables from /usr/sbin.
        "PATH": os.pathsep.join([str(venv_bin), os.environ.get("PATH", ""), "/usr/sbin:/sbin"]),
    }
    molecule = venv_bin / "molecule"
    start = time.monotonic()
    result = subprocess.run(
        [str(molecule), *args, "-s", SCENARIO],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-2000:])
        raise SystemExit(f"molecule {' '.join(args)} failed (exit {result.returncode})")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    first: list[float] = []
    again: list[float] = []
    try:
        for run in range(1, runs + 1):
            _molecule("destroy")
            _molecule("create")
            _molecule("prepare")
            first.append(_molecule("converge"))
            again.append(_molecule("converge"))
            print(f"run {run}: converge {first[-1]:.1f} s, re-run {again[-1]:.1f} s", flush=True)
    finally:
        _molecule("destroy")
    converge, rerun = statistics.median(first), statistics.median(again)
    print(f"median of {runs}: converge {converge:.1f} s, idempotent re-run {rerun:.1f} s")
    print(f"ratio re-run / converge: {rerun / converge:.2f} (goal < 0.50)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
