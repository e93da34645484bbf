"""The network emulation agent (roles/net_agent) on the simulated lab's real nodes.

Two peers, one on nuc-2 (zone-a) and one on nuc-4 (zone-b), with a matrix that limits zone-a to
zone-b. Ground truth is the bytes peer 1 gets through to peer 0, and the qdiscs the kernel shows
in the peers' network namespaces (read by this test with tc, not by the agent); the agent's own
annotation and metrics are checked against them. A new spec and a deleted pod reach the rules
while the peers keep running. This kernel has no netem, so delay, jitter and loss are left to
tests/integration/test_netagent_tc.py (which shows that such a link is refused whole here).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nuclab.netagent import accuracy, agent
from nuclab.netagent import plan as planning
from tests.integration.realnodes import (
    NAMESPACE,
    NUCLAB,
    REAL,
    create,
    nuclab,
    on_real_nodes,
    running_pods,
    wait_for,
)
from tests.integration.scrape import scrape

NAME = "zones"

# Peer 0 logs the rate of every 6 s stream peer 1 sends it (counted after its first second).
STREAMS = r"""
import os, socket, time
me = int(os.environ["NUCLAB_POD_NAME"].rsplit("-", 1)[1])
if me == 0:
    server = socket.create_server(("", 5201))
    while True:
        conn, _ = server.accept()
        start = time.monotonic(); counted = 0; first = None
        while True:
            data = conn.recv(1 << 16)
            if not data:
                break
            if time.monotonic() - start >= 1:
                first = first or time.monotonic()
                counted += len(data)
        if first and time.monotonic() - first > 2:
            mbit = counted * 8 / (time.monotonic() - first) / 1e6
            print(f"throughput_mbit={mbit:.3f} at={time.time():.1f}", flush=True)
        conn.close()
else:
    peer0 = os.environ["NUCLAB_STATEFULSET"] + "-0." + os.environ["NUCLAB_SERVICE"]
    chunk = b"x" * (1 << 16)
    while True:
        try:
            conn = socket.create_connection((peer0, 5201), timeout=5)
            end = time.monotonic() + 6
            while time.monotonic() < end:
                conn.sendall(chunk)
            conn.close()
        except OSError:
            pass
        time.sleep(1)
"""


def _spec(rate: float) -> dict[str, Any]:
    return on_real_nodes(
        name=NAME, peers=2, cpu=0.5, ram=64, uplink_bw=None, downlink_bw=None,
        command=["python3", "-c"], args=[STREAMS],
        matrix=[{"from": "zone-a", "to": "zone-b", "rate": rate}],
    )  # fmt: skip


@pytest.fixture(scope="module")
def zones(core_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("zones")
    proc = create(tmp, _spec(4))
    assert proc.returncode == 0, proc.stderr
    running = running_pods(core_api, NAME, 2)
    assert {p.spec.node_name for p in running} == REAL
    yield core_api, tmp
    nuclab("delete", NAME, "--no-export", "-q", check=False)


def _pod(core: Any, index: int) -> Any:
    return core.read_namespaced_pod(f"nuclab-exp-{NAME}-{index}", NAMESPACE)


def _maybe_pod(core: Any, index: int) -> Any:
    """The peer, or None while it is being replaced."""
    from kubernetes.client.exceptions import ApiException

    try:
        return _pod(core, index)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _applied(core: Any, index: int) -> dict[str, Any] | None:
    text = (_pod(core, index).metadata.annotations or {}).get(agent.ANNOTATION)
    return json.loads(text) if text else None


def _kernel(pod: Any) -> dict[str, Any]:
    """What the pod's eth0 carries, asked of the kernel by this test (tc in its namespace)."""
    pid = agent.pod_pid(Path("/proc"), pod.metadata.uid)
    out = []
    for args in (["-j", "qdisc"], ["qdisc"], ["class"], ["-j", "filter"]):
        out.append(subprocess.run(
            ["nsenter", f"--target={pid}", "--net", "tc", *args, "show", "dev", "eth0"],
            capture_output=True, text=True, check=True,
        ).stdout)  # fmt: skip
    return planning.read_back(*out)


def _throughput_after(core: Any, since: float) -> float | None:
    log = core.read_namespaced_pod_log(f"nuclab-exp-{NAME}-0", NAMESPACE, container="peer")
    found = [
        float(rate)
        for rate, at in re.findall(r"throughput_mbit=([\d.]+) at=([\d.]+)", log)
        if float(at) > since + 7  # a stream that started after the change
    ]
    return found[0] if found else None


def _other_zone(core: Any, index: int) -> str:
    """The zone peer ``index`` sends to: the other real node's (nuc-2 is zone-a, nuc-4 zone-b)."""
    node = core.read_node(_pod(core, index).spec.node_name)
    return {"zone-a": "zone-b", "zone-b": "zone-a"}[node.metadata.labels[agent.ZONE_LABEL]]


def _links(applied: dict[str, Any] | None) -> list[tuple[str, float | None, int]]:
    """(zone, rate, how many peers its filters name) per class the agent read back."""
    rows = (applied or {}).get("links", [])
    return [(row["to"], row["rate_mbit"], row["peers"]) for row in rows]


def test_each_peer_is_shaped_towards_the_other_zone_and_the_agent_says_what_it_applied(
    zones: Any,
) -> None:
    core, _ = zones
    for index in (0, 1):  # symmetric: both ways, each shaped at its sender
        to = _other_zone(core, index)
        applied = wait_for(
            lambda i=index, t=to: (a := _applied(core, i)) and a["in_sync"] and _links(a) == [(t, 4.0, 1)] and a,  # noqa: E501
            60, f"peer {index}'s agent to apply and annotate 4 Mbit/s to {to}", step=2,
        )  # fmt: skip
        assert applied["error"] is None
        pod = _pod(core, index)
        other = _pod(core, 1 - index)
        kernel = _kernel(pod)
        assert kernel["root"] == "htb"
        assert kernel["filters"] == {other.status.pod_ip: "1:10"}
        assert kernel["classes"]["1:10"]["rate_kbit"] == 4000
        metrics = scrape(f"http://{_agent_ip(core, pod.spec.node_name)}:9404/metrics")
        rate = [
            s.value for s in metrics
            if s.name == "nuclab_netagent_link_rate_bits"
            and s.labels.get("pod") == pod.metadata.name
        ]  # fmt: skip
        assert rate == [4e6], rate
    since = time.time()  # both peers shaped: streams that start from now on cross the rules
    mbit = wait_for(lambda: _throughput_after(core, since), 60, "a stream at 4 Mbit/s", step=2)
    print(f"zone-a <-> zone-b at 4 Mbit/s: {mbit:.2f} Mbit/s")
    assert 4 * 0.85 <= mbit <= 4 * 1.05


def _agent_ip(core: Any, node: str) -> str:
    found = core.list_namespaced_pod(
        "kube-system", label_selector="app.kubernetes.io/name=nuclab-net-agent",
        field_selector=f"spec.nodeName={node}",
    ).items  # fmt: skip
    assert found and found[0].status.pod_ip, f"no node agent on {node}"
    return found[0].status.pod_ip


def test_a_new_matrix_and_a_replaced_peer_reach_the_rules_without_restarting_anyone(
    zones: Any,
) -> None:
    core, tmp = zones
    before = {i: _pod(core, i).metadata.uid for i in (0, 1)}
    path = tmp / "matrix.yml"
    path.write_text(yaml.safe_dump([{"from": "zone-a", "to": "zone-b", "rate": 10}]))
    nuclab("create", "--name", NAME, "--update", "--matrix", str(path), "-q")
    changed = time.monotonic()
    wait_for(
        lambda: all(_links(_applied(core, i)) == [(_other_zone(core, i), 10.0, 1)] for i in (0, 1)),
        60, "both agents to apply 10 Mbit/s", step=0.5,
    )  # fmt: skip
    followed = time.monotonic() - changed
    print(f"the new matrix reached both peers' rules {followed:.1f} s after nuclab create returned")
    assert followed <= 10
    since = time.time()  # streams that start from now on cross the new rules only
    mbit = wait_for(lambda: _throughput_after(core, since), 60, "a stream at 10 Mbit/s", step=2)
    print(f"zone-a <-> zone-b after the update to 10 Mbit/s: {mbit:.2f} Mbit/s")
    assert 10 * 0.85 <= mbit <= 10 * 1.05
    for index in (0, 1):
        pod = _pod(core, index)
        assert pod.metadata.uid == before[index], "a peer was replaced by the update"
        assert all(c.restart_count == 0 for c in pod.status.container_statuses)

    # Peer 0 replaced: a new address, which peer 1's filter must follow.
    core.delete_namespaced_pod(f"nuclab-exp-{NAME}-0", NAMESPACE, grace_period_seconds=0)

    def replaced() -> Any:
        pod = _maybe_pod(core, 0)
        return pod if pod and pod.metadata.uid != before[0] and pod.status.pod_ip else None

    new = wait_for(replaced, 90, "peer 0 to come back", step=2)
    wait_for(
        lambda: _kernel(_pod(core, 1))["filters"] == {new.status.pod_ip: "1:10"},
        60, "peer 1's filter to follow peer 0's new address", step=2,
    )  # fmt: skip
    assert _pod(core, 1).metadata.uid == before[1]
    # and the new peer 0 is shaped and annotated (it has the old one's name, not its UID)
    wait_for(
        lambda: _links(_applied(core, 0)) == [(_other_zone(core, 0), 10.0, 1)],
        30, "the new peer 0's annotation", step=1,
    )  # fmt: skip


def test_the_dataset_holds_each_link_configured_applied_and_over_time(zones: Any) -> None:
    """The export records the agent's read-back in the manifest's ``network`` table (per
    directed zone pair) and the agent's series (scraped by the lab's PodMonitor
    nuclab-net-agent); the report shows the table."""
    _core, tmp = zones
    from nuclab.report.data import Dataset

    def newest(dataset: Path) -> dict[str, float]:
        """Each peer's rate in the dataset's newest series of it (a series of the replaced
        peer 0 may end before the update reached a scrape)."""
        family = "nuclab_netagent_link_rate_bits"
        found = {}
        for series in sorted(Dataset(dataset).metric(family, family), key=lambda s: s.t[-1]):
            found[series.labels["pod"]] = float(series.v[-1])
        return found

    def exported() -> Path | None:
        """A dataset whose newest samples show the update: the agent's gauges reach Prometheus
        at its next scrape of them, and the export's last step may come before that."""
        if not all(
            _links(_applied(zones[0], i)) == [(_other_zone(zones[0], i), 10.0, 1)] for i in (0, 1)
        ):
            return None  # the replaced peer of the test before may still be on its way
        out = tmp / f"ds-{time.monotonic_ns()}"
        nuclab("export", NAME, "--output", str(out))
        manifest = json.loads((out / "manifest.json").read_text())
        if "nuclab_netagent_link_rate_bits" not in (manifest.get("metrics") or {}):
            return None
        return out if set(newest(out).values()) == {10e6} else None

    dataset = wait_for(exported, 180, "the agent's 10 Mbit/s to reach the dataset", step=5)
    manifest = json.loads((dataset / "manifest.json").read_text())
    rows = {(r["from"], r["to"]): r for r in manifest["network"]}
    assert set(rows) == {("zone-a", "zone-b"), ("zone-b", "zone-a")}
    for row in rows.values():
        assert row["configured"] == {
            "delay_ms": 0.0, "jitter_ms": 0.0, "loss_percent": 0.0, "rate_mbit": 10.0,
        }  # fmt: skip
        assert row["applied"]["rate_mbit"] == [10.0]
        assert (row["peers"], row["peers_in_sync"]) == (1, 1)
        assert accuracy.matches(row)
    rates = Dataset(dataset).metric(
        "nuclab_netagent_link_rate_bits", "nuclab_netagent_link_rate_bits"
    )
    assert {s.labels["pod"] for s in rates} == {f"nuclab-exp-{NAME}-0", f"nuclab-exp-{NAME}-1"}
    assert all(s.labels["experiment"] == NAME and s.labels["namespace"] == NAMESPACE for s in rates)
    assert newest(dataset) == {f"nuclab-exp-{NAME}-0": 10e6, f"nuclab-exp-{NAME}-1": 10e6}
    page = tmp / "report.html"
    done = subprocess.run(
        [NUCLAB, "report", str(dataset), "--output", str(page)], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "Network emulation: configured, applied, measured" in text
    assert "zone-a &gt; zone-b" in text and "rate 10 Mbit/s" in text


def test_a_scale_reaches_the_rules_within_10_s_and_a_delete_leaves_nothing(zones: Any) -> None:
    core, _ = zones
    nuclab("scale", NAME, "4", "-q")
    running = running_pods(core, NAME, 4, timeout=120)
    started = time.monotonic()

    def followed() -> bool:
        for pod in running:
            if pod.spec.node_name not in REAL:
                continue  # a kwok node runs nothing: no namespace to shape
            mine = core.read_node(pod.spec.node_name).metadata.labels[agent.ZONE_LABEL]
            others = {
                p.status.pod_ip for p in running
                if core.read_node(p.spec.node_name).metadata.labels[agent.ZONE_LABEL] != mine
            }  # fmt: skip
            if set(_kernel(pod)["filters"]) != others:
                return False
        return True

    wait_for(
        followed, 30, "every real peer's filters to name the other zone's 4-peer set", step=0.5
    )
    took = time.monotonic() - started
    print(f"the scale to 4 peers reached the rules {took:.1f} s after the peers ran")
    assert took <= 10
    nuclab("delete", NAME, "--no-export", "-q")
    left = core.list_namespaced_config_map(NAMESPACE, label_selector=f"nuclab.io/experiment={NAME}")
    assert left.items == []
    assert (
        core.list_namespaced_pod(NAMESPACE, label_selector=f"nuclab.io/experiment={NAME}").items
        == []
    )
