"""Experiments on the simulated lab's real nodes: pods that really run, with their limits enforced.

inventory/sim makes nuc-2 (zone-a) and nuc-4 (zone-b) real nodes: a kubelet with containerd,
runc and the CNI plugins each, in a network namespace of this machine. Everything here is read
from the real parts: the kubelet's pod status, the cgroup's own accounting, bytes that crossed
the bandwidth plugin's shaping, names the cluster DNS resolved. No netem here (this kernel has
none), so latency, jitter and loss are not tested on these nodes.
"""

from __future__ import annotations

import glob
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import SIM_INVENTORY

NAMESPACE = "nuclab"
REAL = {"nuc-2", "nuc-4"}
NUCLAB = str(Path(sys.executable).parent / "nuclab")


def nuclab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [NUCLAB, *args, "-i", str(SIM_INVENTORY)], capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"nuclab {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def create(tmp_path: Path, spec: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{spec['name']}.yml"
    path.write_text(yaml.safe_dump({"experiment": spec}))
    return nuclab("create", "-f", str(path), "-q", *extra, check=False)


@pytest.fixture(scope="module")
def core(core_api: Any) -> Iterator[Any]:
    yield core_api
    for name in ("oom", "busy", "bw", "bwfree", "dns"):
        nuclab("delete", name, "--no-export", "-q", check=False)


def pods(core: Any, name: str) -> list[Any]:
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


def running_pods(core: Any, name: str, count: int, timeout: float = 90) -> list[Any]:
    """The experiment's peers once ``count`` of them run and have their pod IP."""

    def running() -> list[Any] | None:
        found = [p for p in pods(core, name) if p.status.phase == "Running" and p.status.pod_ip]
        return found if len(found) == count else None

    return wait_for(running, timeout, f"{count} running peer(s) of {name}")


def on_real_nodes(**spec: Any) -> dict[str, Any]:
    """A spec whose peers run on the real nodes only (node label nuclab.io/node-kind=real)."""
    return {"role": "worker", "node_labels": {"node-kind": "real"}, **spec}


def test_the_lab_has_real_and_kwok_nodes(core: Any) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    real = {
        name for name, n in nodes.items() if n.metadata.labels.get("nuclab.io/node-kind") == "real"
    }
    assert real == REAL
    for name in REAL:
        node = nodes[name]
        assert node.status.node_info.container_runtime_version.startswith("containerd://2.")
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", name
        # the inventory's labels reached the real nodes too
        assert node.metadata.labels["nuclab.io/role"] == "worker"
    assert nodes["nuc-2"].metadata.labels["topology.kubernetes.io/zone"] == "zone-a"
    assert nodes["nuc-4"].metadata.labels["topology.kubernetes.io/zone"] == "zone-b"
    kwok = set(nodes) - REAL
    assert kwok and all(nodes[n].status.node_info.container_runtime_version == "kwok" for n in kwok)


def test_a_peer_above_its_memory_limit_is_oomkilled_and_listed_so(
    core: Any, tmp_path: Path
) -> None:
    # 16 MiB, the reference figure; the peer allocates 64 MiB.
    create(
        tmp_path,
        on_real_nodes(
            name="oom",
            peers=1,
            ram=16,
            command=["python3", "-c"],
            args=["x = bytearray(64 << 20); import time; time.sleep(600)"],
        ),
        "--timeout",
        "5",
    )

    def oom_killed() -> bool:
        for pod in pods(core, "oom"):
            for status in pod.status.container_statuses or []:
                for state in (status.state, status.last_state):
                    if state and state.terminated and state.terminated.reason == "OOMKilled":
                        return True
        return False

    wait_for(oom_killed, 90, "the kubelet to report the peer OOMKilled")
    listed = json.loads(nuclab("list", "-o", "json").stdout)
    row = next(r for r in listed if r["experiment"] == "oom")
    assert row["running"] == 0
    assert "OOMKilled" in json.dumps(row["problems"])
    table = nuclab("list").stdout
    assert re.search(r"^oom\s.*OOMKilled", table, re.M), table


def _pod_cpu_seconds(uid: str) -> float:
    found = glob.glob(
        f"/sys/fs/cgroup/cpuacct/nuclab/*/*/kubepods/**/pod{uid}/cpuacct.usage", recursive=True
    )
    if not found:  # a unified (cgroup v2) machine
        found = glob.glob(
            f"/sys/fs/cgroup/nuclab/*/*/kubepods/**/pod{uid}/cpu.stat", recursive=True
        )
        assert found, f"no cgroup of pod {uid}"
        usage = dict(line.split() for line in Path(found[0]).read_text().splitlines())
        return int(usage["usage_usec"]) / 1e6
    return int(Path(found[0]).read_text()) / 1e9


def test_a_busy_peer_at_005_cpu_uses_at_most_6_percent_of_a_core(core: Any, tmp_path: Path) -> None:
    proc = create(
        tmp_path,
        on_real_nodes(
            name="busy",
            peers=1,
            cpu=0.05,
            ram=32,
            command=["python3", "-c"],
            args=["while True: pass"],
        ),
    )
    assert proc.returncode == 0, proc.stderr
    (pod,) = running_pods(core, "busy", 1)
    assert pod.spec.node_name in REAL
    time.sleep(3)
    start_cpu, start = _pod_cpu_seconds(pod.metadata.uid), time.monotonic()
    time.sleep(30)
    used = (_pod_cpu_seconds(pod.metadata.uid) - start_cpu) / (time.monotonic() - start)
    print(f"busy peer at 0.05 CPU used {used:.4f} of a core over 30 s")
    assert used <= 0.06
    assert used >= 0.03, "the peer did not run its loop"


# Peer 0 counts the bytes peer 1 sends it for 10 s (after 2 s of start) and logs the rate.
BLAST = r"""
import os, socket, time
me = int(os.environ["NUCLAB_POD_NAME"].rsplit("-", 1)[1])
if me == 0:
    server = socket.create_server(("", 5201))
    while True:
        conn, _ = server.accept()
        start = time.monotonic(); counted = 0; first = None
        while time.monotonic() - start < 12:
            data = conn.recv(1 << 16)
            if not data:
                break
            if time.monotonic() - start >= 2:
                first = first or time.monotonic()
                counted += len(data)
        if first:
            mbit = counted * 8 / (time.monotonic() - first) / 1e6
            print(f"throughput_mbit={mbit:.3f}", flush=True)
        conn.close()
else:
    peer0 = os.environ["NUCLAB_STATEFULSET"] + "-0." + os.environ["NUCLAB_SERVICE"]
    while True:
        try:
            conn = socket.create_connection((peer0, 5201), timeout=5)
            break
        except OSError:
            time.sleep(1)
    chunk = b"x" * (1 << 16); end = time.monotonic() + 14
    try:
        while time.monotonic() < end:
            conn.sendall(chunk)
    except OSError:
        pass
    conn.close()
    time.sleep(3600)
"""


def _throughput(core: Any, tmp_path: Path, name: str, bandwidth: float | None) -> float:
    proc = create(
        tmp_path,
        on_real_nodes(
            name=name,
            peers=2,
            cpu=1,
            ram=64,
            uplink_bw=bandwidth,
            downlink_bw=bandwidth,
            command=["python3", "-c"],
            args=[BLAST],
        ),
    )
    assert proc.returncode == 0, proc.stderr
    running = running_pods(core, name, 2)
    assert {p.spec.node_name for p in running} == REAL, "the peers are not one on each real node"

    def logged() -> float | None:
        log = core.read_namespaced_pod_log(f"nuclab-exp-{name}-0", NAMESPACE, container="peer")
        found = re.findall(r"throughput_mbit=([\d.]+)", log)
        return float(found[0]) if found else None

    rate = wait_for(logged, 60, f"{name}'s peer 0 to log the throughput", step=2)
    print(f"{name}: {rate:.2f} Mbit/s between nuc-2 and nuc-4 (limit {bandwidth})")
    return rate


def test_the_cni_bandwidth_plugin_enforces_16_mbit_between_real_nodes(
    core: Any, tmp_path: Path
) -> None:
    limited = _throughput(core, tmp_path, "bw", 16)
    assert 16 * 0.9 <= limited <= 16 * 1.1
    free = _throughput(core, tmp_path, "bwfree", None)
    assert free >= 5 * 16


def test_peers_resolve_each_other_through_the_headless_service(core: Any, tmp_path: Path) -> None:
    script = (
        "import os, socket, time\n"
        "sts, svc = os.environ['NUCLAB_STATEFULSET'], os.environ['NUCLAB_SERVICE']\n"
        "while True:\n"
        "    try:\n"
        "        names = [f'{sts}-{i}.{svc}' for i in range(2)]\n"
        "        print('resolved', *[socket.gethostbyname(n) for n in names], flush=True)\n"
        "    except OSError as exc:\n"
        "        print('unresolved', exc, flush=True)\n"
        "    time.sleep(2)\n"
    )
    proc = create(
        tmp_path,
        on_real_nodes(name="dns", peers=2, ram=32, command=["python3", "-c"], args=[script]),
    )
    assert proc.returncode == 0, proc.stderr
    running = running_pods(core, "dns", 2)
    want = sorted(p.status.pod_ip for p in running)

    def resolved() -> bool:
        log = core.read_namespaced_pod_log("nuclab-exp-dns-0", NAMESPACE, container="peer")
        lines = [line.split()[1:] for line in log.splitlines() if line.startswith("resolved")]
        return bool(lines) and sorted(lines[-1]) == want

    wait_for(resolved, 60, "peer 0 to resolve both peers' stable names to their pod IPs", step=2)


@pytest.mark.parametrize("path", [[], ["--via-playbook"]], ids=["direct", "playbook"])
def test_latency_on_nodes_without_netem_is_refused_before_anything_starts(
    core: Any, path: list[str]
) -> None:
    # This machine's kernel has no netem, so the real nodes say nuclab.io/netem=false.
    labels = {n.metadata.name: n.metadata.labels for n in core.list_node().items}
    assert {name for name in REAL if labels[name].get("nuclab.io/netem") == "false"} == REAL
    proc = nuclab(
        "create", "--name", "shaped", "--peers", "2", "--latency", "10",
        "--label", "node-kind=real", *path, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "nuc-2, nuc-4" in proc.stderr and "netem" in proc.stderr, proc.stderr
    assert not pods(core, "shaped")
    listed = json.loads(nuclab("list", "-o", "json").stdout)
    assert "shaped" not in {row["experiment"] for row in listed}
