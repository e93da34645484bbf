"""What the tests on the simulated lab's real nodes share: the nodes, the CLI, the peers, a wait."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import SIM_INVENTORY

NAMESPACE = "nuclab"
REAL = {"nuc-2", "nuc-4"}  # inventory/sim's real workers (sim_node_kind: real)
REAL_CLIENT = "nuc-1"  # and its real client node, where load generator Jobs run
NUCLAB = str(Path(sys.executable).parent / "nuclab")


def nuclab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [NUCLAB, *args, "-i", str(SIM_INVENTORY)], capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"nuclab {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def pods(core: Any, name: str) -> list[Any]:
    """The experiment's peer pods (not its loadgen's)."""
    return core.list_namespaced_pod(
        NAMESPACE, label_selector=f"nuclab.io/experiment={name},app.kubernetes.io/component=peer"
    ).items


def wait_for(predicate, timeout: float, what: str, step: float = 1.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def create(tmp_path: Path, spec: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    """`nuclab create -f` of ``spec`` (a spec file in ``tmp_path``); the caller checks the exit."""
    path = tmp_path / f"{spec['name']}.yml"
    path.write_text(yaml.safe_dump({"experiment": spec}))
    return nuclab("create", "-f", str(path), "-q", *extra, check=False)


def running_pods(core: Any, name: str, count: int, timeout: float = 90) -> list[Any]:
    """The experiment's peers, by name, once ``count`` of them run and have their pod IP."""

    def running() -> list[Any] | None:
        found = [p for p in pods(core, name) if p.status.phase == "Running" and p.status.pod_ip]
        return sorted(found, key=lambda p: p.metadata.name) if len(found) == count else None

    return wait_for(running, timeout, f"{count} running peer(s) of {name}")


def on_real_nodes(**spec: Any) -> dict[str, Any]:
    """A spec whose peers run on the real nodes only (node label nuclab.io/node-kind=real)."""
    return {"role": "worker", "node_labels": {"node-kind": "real"}, **spec}
