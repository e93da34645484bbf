"""Experiments on the simulated lab's real nodes: pods that really run, with their limits enforced.

inventory/sim makes the workers nuc-2 (zone-a) and nuc-4 (zone-b) real nodes (and the client
nuc-1, where tests/integration/test_loadgen_experiment.py runs a load generator): a kubelet with
containerd, runc and the CNI plugins each, in a network namespace of this machine. Everything here
is read from the real parts: the kubelet's pod status, the cgroup's own accounting, bytes that
crossed the bandwidth plugin's shaping, names the cluster DNS resolved. No netem here (this kernel
has none), so latency, jitter and loss are not tested on these nodes.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.realnodes import (
    NAMESPACE,
    REAL,
    REAL_CLIENT,
    create,
    nuclab,
    on_real_nodes,
    pods,
    running_pods,
    wait_for,
)
from tests.integration.scrape import scrape, total
from tests.integration.soak import Soak


@pytest.fixture(scope="module")
def core(core_api: Any) -> Iterator[Any]:
    yield core_api
    for name in ("oom", "busy", "bw", "bwfree", "dns", "mixed"):
        nuclab("delete", name, "--no-export", "-q", check=False)


def test_the_lab_has_real_and_kwok_nodes(core: Any) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    real = {
        name for name, n in nodes.items() if n.metadata.labels.get("nuclab.io/node-kind") == "real"
    }
    assert real == REAL | {REAL_CLIENT}
    for name in real:
        node = nodes[name]
        assert node.status.node_info.container_runtime_version.startswith("containerd://2.")
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", name
        # the inventory's labels reached the real nodes too
        role = "client" if name == REAL_CLIENT else "worker"
        assert node.metadata.labels["nuclab.io/role"] == role, name
    assert nodes["nuc-2"].metadata.labels["topology.kubernetes.io/zone"] == "zone-a"
    assert nodes["nuc-4"].metadata.labels["topology.kubernetes.io/zone"] == "zone-b"
    kwok = set(nodes) - real
    assert kwok and all(nodes[n].status.node_info.container_runtime_version == "kwok" for n in kwok)


def test_real_nodes_offer_the_inventorys_memory_and_this_machines_cpu(core: Any) -> None:
    # inventory/sim gives every node node_memory 16Gi (less than this machine's): a real node's
    # kubelet reserves the rest, so the scheduler sees 16Gi, as on a kwok node. CPU cannot be
    # raised to node_cpu: a real node offers the cores this machine has.
    from kubernetes.utils.quantity import parse_quantity

    total_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    assert total_kib * 1024 > parse_quantity("16Gi"), "this machine has less than node_memory"
    for name in REAL:
        node = core.read_node(name)
        assert parse_quantity(node.status.allocatable["memory"]) == parse_quantity("16Gi"), name
        assert parse_quantity(node.status.capacity["memory"]) == total_kib * 1024, name
        assert parse_quantity(node.status.allocatable["cpu"]) == os.cpu_count(), name


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

    # Between two kills the restarted peer is Ready for a moment (no probes on a command of
    # one's own) until it has allocated again: read the list until it settles.
    def listed_oom() -> dict[str, Any] | None:
        rows = json.loads(nuclab("list", "-o", "json").stdout)
        row = next(r for r in rows if r["experiment"] == "oom")
        return row if row["running"] == 0 else None

    row = wait_for(listed_oom, 60, "nuclab list to show the OOMKilled peer not running", step=2)
    assert row["running"] == 0
    assert "OOMKilled" in json.dumps(row["problems"])
    table = nuclab("list").stdout
    assert re.search(r"^oom\s.*OOMKilled", table, re.M), table
    nuclab("delete", "oom", "--no-export", "-q")


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
    nuclab("delete", "busy", "--no-export", "-q")


# Peer 0 counts the bytes peer 1 sends it for 12 s from the first byte and logs the rate: the
# bandwidth plugin's buckets hold from the start only once the node agent bounded their burst
# (containerd asks for 2^32 bits; counted after 2 s, the first 256 MB went unseen).
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
            cpu=0.5,
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
    nuclab("delete", name, "--no-export", "-q")
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


def _peer_counters(pod_ip: str) -> dict[str, float]:
    found = scrape(f"http://{pod_ip}:9464/metrics")
    return {key: total(found, f"nuclab_peer_messages_{key}_total") for key in ("sent", "received")}


def _memory_peak_mib(uid: str) -> float:
    found = glob.glob(
        f"/sys/fs/cgroup/memory/nuclab/*/*/kubepods/**/pod{uid}/*/memory.max_usage_in_bytes",
        recursive=True,
    )
    assert found, f"no memory cgroup of pod {uid}'s containers"
    return max(int(Path(p).read_text()) for p in found) / (1 << 20)


def test_the_reference_experiment_runs_unchanged_on_the_real_nodes_for_5_minutes(
    core: Any, reference_soak: Soak
) -> None:
    # started with the first lab test (tests/integration/soak.py): the figures are REFERENCE's
    try:
        ran = reference_soak.wait()
        peers = reference_soak.peers
        assert {p.spec.node_name for p in peers} == REAL
        # every 15 s: every peer the same pod, ready, never restarted
        assert reference_soak.polls >= int(ran // 15) - 2, (reference_soak.polls, ran)
        assert reference_soak.problems == []
        for pod in pods(core, "reference"):
            (status,) = pod.status.container_statuses
            assert status.ready and status.restart_count == 0, (pod.metadata.name, status)
        counters = {p.metadata.name: _peer_counters(p.status.pod_ip) for p in peers}
        sent = {name: c["sent"] for name, c in counters.items()}
        # one message every 2 s since they ran (at least the 5 minutes: 150)
        assert min(sent.values()) >= 0.93 * ran / 2, (sent, ran)
        for name, c in counters.items():
            others = sum(s for other, s in sent.items() if other != name)
            # read one after the other: at most one message per other peer in flight
            assert abs(c["received"] - others) <= 4, (name, c, sent)
        peaks = {p.metadata.name: _memory_peak_mib(p.metadata.uid) for p in peers}
        print(f"reference peers after {ran:.0f} s: sent {sent}, cgroup memory peaks (MiB) {peaks}")
        assert max(peaks.values()) < 16
        listed = json.loads(nuclab("list", "-o", "json").stdout)
        row = next(r for r in listed if r["experiment"] == "reference")
        assert (row["running"], row["simulated"], row["problems"]) == (5, 0, [])
    finally:
        reference_soak.delete()


def test_20_peers_over_real_and_kwok_nodes_and_list_says_which_are_simulated(core: Any) -> None:
    proc = nuclab("create", "--name", "mixed", "--peers", "20", "-q", check=False)
    assert proc.returncode == 0, proc.stderr
    placed = {p.metadata.name: p.spec.node_name for p in pods(core, "mixed")}
    on_real = {name for name, node in placed.items() if node in REAL}
    assert len(placed) == 20 and on_real and len(on_real) < 20, placed
    listed = json.loads(nuclab("list", "-o", "json").stdout)
    row = next(r for r in listed if r["experiment"] == "mixed")
    assert row["simulated"] == 20 - len(on_real)
    for peer in row["peers"]:
        assert peer["simulated"] == (peer["name"] not in on_real), peer
        assert peer["ready"] and not peer["problem"], peer
    # the real ones really run: the kubelet started their container in containerd
    for pod in pods(core, "mixed"):
        (status,) = pod.status.container_statuses
        if pod.metadata.name in on_real:
            assert status.container_id.startswith("containerd://") and status.ready
    table = nuclab("list").stdout
    assert re.search(rf"^mixed\s.*\s{20 - len(on_real)}\s+-$", table, re.M), table
