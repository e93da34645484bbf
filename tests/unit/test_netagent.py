"""The node agent's plan, its tc lines and its reading of tc's output (pure parts; the real
devices are in tests/integration/test_netagent_tc.py, the DaemonSet on the simulated lab's real
nodes in tests/integration/test_net_agent_lab.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nuclab.netagent import agent
from nuclab.netagent import plan as planning

PEERS = [
    ("10.0.2.5", "zone-b"), ("10.0.2.4", "zone-b"), ("10.0.1.7", "zone-a"), ("10.0.1.6", "zone-a"),
]  # fmt: skip


def test_a_symmetric_entry_shapes_both_sides_and_only_the_zones_it_names() -> None:
    network = {"matrix": [{"from": "zone-a", "to": "zone-b", "rate": 2, "delay": 10}]}
    mine = planning.plan("zone-a", network, PEERS, "10.0.1.6")
    assert mine.default.empty
    assert [(c.classid, c.zone, c.destinations) for c in mine.classes] == [
        ("1:10", "zone-b", ("10.0.2.4", "10.0.2.5")),
    ]
    theirs = planning.plan("zone-b", network, PEERS, "10.0.2.4")
    assert [(c.zone, c.link.rate, c.link.delay) for c in theirs.classes] == [("zone-a", 2.0, 10.0)]
    assert theirs.classes[0].destinations == ("10.0.1.6", "10.0.1.7")
    one_way = {"matrix": [{**network["matrix"][0], "symmetric": False}]}
    assert planning.plan("zone-b", one_way, PEERS).empty


def test_the_tc_lines_of_a_plan() -> None:
    network = {"latency": 5, "matrix": [{"from": "a", "to": "b", "rate": 2.5, "loss": 1}]}
    p = planning.plan("a", network, [("10.0.0.9", "b")])
    assert planning.batch(p, "eth0").splitlines() == [
        "qdisc add dev eth0 root handle 1: htb default 1",
        "class add dev eth0 parent 1: classid 1:1 htb rate 10000000kbit ceil 10000000kbit quantum 1514",  # noqa: E501
        "qdisc add dev eth0 parent 1:1 handle 1: netem delay 5ms",
        "class add dev eth0 parent 1: classid 1:10 htb rate 2500kbit ceil 2500kbit quantum 1514",
        "qdisc add dev eth0 parent 1:10 handle 10: netem loss 1%",
        "filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst 10.0.0.9/32 flowid 1:10",
    ]
    assert planning.batch(planning.plan("a", {}, []), "eth0") == ""


# What tc (iproute2 6.1) printed for an HTB root with a 2 Mbit/s class and two filters.
QDISCS = (
    '[{"kind":"htb","handle":"1:","root":true,"refcnt":3,"options":{"r2q":10,"default":"0x0"}}]'
)
CLASSES = """class htb 1:10 root leaf 10: prio 0 rate 2Mbit ceil 2Mbit burst 1600b cburst 1600b
class htb 1:1 root prio 0 rate 10Gbit ceil 10Gbit burst 0b cburst 0b
"""
NETEM = "qdisc netem 10: parent 1:10 limit 1000 delay 20ms  2ms loss 0.5%\n"
FILTERS = json.dumps([
    {"parent": "1:", "protocol": "ip", "pref": 1, "kind": "u32", "chain": 0},
    {"parent": "1:", "kind": "u32", "options": {"fh": "800:", "ht_divisor": 1}},
    {"parent": "1:", "kind": "u32", "options": {"flowid": "1:10", "match": {
        "value": "a090005", "mask": "ffffffff", "offmask": "", "off": 16}}},
])  # fmt: skip


def test_read_back_parses_what_tc_prints() -> None:
    back = planning.read_back(QDISCS, NETEM, CLASSES, FILTERS)
    assert back == {
        "root": "htb",
        "classes": {
            "1:10": {"rate_kbit": 2000, "delay_ms": 20.0, "jitter_ms": 2.0, "loss_percent": 0.5},
            "1:1": {
                "rate_kbit": 10_000_000,
                "delay_ms": 0.0,
                "jitter_ms": 0.0,
                "loss_percent": 0.0,
            },
        },
        "filters": {"10.9.0.5": "1:10"},
    }
    other = '[{"kind":"htb","handle":"5:","root":true}]'
    assert planning.read_back(other, "", CLASSES, FILTERS)["root"] == "htb (not the agent's)"
    assert planning.read_back('[{"kind":"noqueue","root":true}]', "", "", "[]")["root"] is None


def test_expected_matches_read_back_for_the_same_plan() -> None:
    p = planning.plan("a", {"matrix": [{"from": "a", "to": "b", "rate": 2, "delay": 20, "jitter": 2, "loss": 0.5}]}, [("10.9.0.5", "b")])  # fmt: skip  # noqa: E501
    back = planning.read_back(QDISCS, NETEM, CLASSES.splitlines()[0], FILTERS)
    assert planning.expected(p) == back
    assert planning.annotation(p, back) == [
        {
            "to": "b",
            "rate_mbit": 2.0,
            "delay_ms": 20.0,
            "jitter_ms": 2.0,
            "loss_percent": 0.5,
            "peers": 1,
        },
    ]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"latency": -1}, "latency: -1 is out of range"),
        ({"loss": float("nan")}, "loss: nan is out of range"),
        ({"matrix": [{"from": "a", "to": "b", "rate": 0}]}, r"matrix\[0\].rate: 0 is out of range"),
        (
            {"matrix": [{"from": "a", "to": "b", "delay": "5; reboot"}]},
            r"matrix\[0\].delay: '5; reboot' is not a number",
        ),
        ({"matrix": {"from": "a"}}, "matrix: not a list"),
    ],
)
def test_a_tenants_configmap_reaches_tc_only_as_checked_numbers(data: dict, error: str) -> None:
    configmap = {"data": {agent.NETWORK_KEY: json.dumps(data)}}
    with pytest.raises(agent.AgentError, match=error):
        agent.network_of(configmap)


def test_the_agent_finds_a_pods_process_by_its_cgroup(tmp_path: Path) -> None:
    """``pod_pid`` on a /proc of its own making: both cgroup drivers' spellings of a pod."""
    uid = "0b6f1c1e-3f1a-4c55-9a7e-2a1f8c9d0e11"
    for pid, line in (
        (11, "0::/init.scope\n"),
        (42, f"12:memory:/nuclab/nuc-2/kubepods/besteffort/pod{uid}/abc\n"),
    ):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(line)
    assert agent.pod_pid(tmp_path, uid) == 42
    systemd = uid.replace("-", "_")
    (tmp_path / "42" / "cgroup").write_text(f"0::/kubepods.slice/kubepods-pod{systemd}.slice/x\n")
    assert agent.pod_pid(tmp_path, uid, cached=42) == 42
    with pytest.raises(agent.AgentError, match="no process of pod"):
        agent.pod_pid(tmp_path, "ffffffff-0000-0000-0000-000000000000")


# A peer's namespace (this kernel's /proc/<pid>/net/fib_trie for a veth at 10.42.1.5/24).
FIB_TRIE = """Local:
  +-- 0.0.0.0/1 2 0 2
     +-- 10.42.1.0/24 2 0 2
        +-- 10.42.1.0/29 2 0 2
           |-- 10.42.1.0
              /24 link UNICAST
           |-- 10.42.1.5
              /32 host LOCAL
        |-- 10.42.1.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.1
              /32 host LOCAL
"""


def test_the_agent_takes_only_a_process_in_the_pods_network_namespace(tmp_path: Path) -> None:
    """Two processes of one pod's cgroup, one in a namespace without the pod's address (a
    sandbox being replaced): the one that holds the address is shaped, also when the other was
    cached."""
    uid = "0b6f1c1e-3f1a-4c55-9a7e-2a1f8c9d0e11"
    for pid, trie in ((40, FIB_TRIE.replace("10.42.1.5", "10.42.1.9")), (42, FIB_TRIE)):
        (tmp_path / str(pid) / "net").mkdir(parents=True)
        (tmp_path / str(pid) / "cgroup").write_text(f"0::/kubepods/pod{uid}/c\n")
        (tmp_path / str(pid) / "net" / "fib_trie").write_text(trie)
    assert agent.pod_pid(tmp_path, uid) == 40  # by cgroup alone: the first
    assert agent.pod_pid(tmp_path, uid, address="10.42.1.5") == 42
    assert agent.pod_pid(tmp_path, uid, cached=40, address="10.42.1.5") == 42
    assert agent.holds_address(FIB_TRIE, "10.42.1.5")
    assert not agent.holds_address(FIB_TRIE, "10.42.1.0")  # the subnet: a route, not an address
    assert not agent.holds_address(FIB_TRIE, "10.42.1.255")
    with pytest.raises(agent.AgentError, match=r"holding 10\.42\.1\.6"):
        agent.pod_pid(tmp_path, uid, address="10.42.1.6")


# What this kernel's tc printed for the CNI bandwidth plugin's layout at 8 Mbit/s: the veth's
# bucket with the burst containerd asks for, and its ingress redirected to the plugin's ifb.
PLUGIN_QDISCS = json.dumps([
    {"kind": "tbf", "handle": "1:", "root": True, "refcnt": 3,
     "options": {"rate": 1000000, "burst": 261993003, "lat": 275000001}},
    {"kind": "ingress", "handle": "ffff:", "parent": "ffff:fff1", "options": {}},
])  # fmt: skip
PLUGIN_FILTERS = json.dumps([
    {"parent": "ffff:", "protocol": "all", "pref": 49152, "kind": "u32", "chain": 0},
    {"parent": "ffff:", "protocol": "all", "pref": 49152, "kind": "u32", "chain": 0, "options": {
        "fh": "800::800", "order": 2048, "key_ht": "800", "bkt": "0", "not_in_hw": True,
        "match": {"value": "0", "mask": "0", "offmask": "", "off": 0},
        "actions": [{"order": 1, "kind": "mirred", "mirred_action": "redirect",
                     "direction": "egress", "to_dev": "bwp7c3e", "control_action":
                     {"type": "stolen"}, "index": 1, "ref": 1, "bind": 1}]}},
])  # fmt: skip


def test_the_bandwidth_plugins_bucket_is_bounded_to_10_ms_of_its_rate() -> None:
    assert planning.bucket_fix(PLUGIN_QDISCS, "veth1") == [
        "qdisc", "change", "dev", "veth1", "root", "handle", "1:", "tbf",
        "rate", "8000000bit", "burst", "10000", "latency", "25ms",
    ]  # fmt: skip
    bounded = PLUGIN_QDISCS.replace("261993003", "10000")
    assert planning.bucket_fix(bounded, "veth1") is None  # a second round changes nothing
    slow = PLUGIN_QDISCS.replace('"rate": 1000000', '"rate": 12500')  # 100 kbit/s
    assert planning.bucket_fix(slow, "veth1")[11] == str(4 * 1514)  # a few full frames at least
    for other in ('[{"kind": "noqueue", "root": true}]', "[]", ""):
        assert planning.bucket_fix(other, "veth1") is None  # no limit: nothing to bound
    assert planning.redirected_to(PLUGIN_FILTERS) == ["bwp7c3e"]
    assert planning.redirected_to("[]") == []


def _manifest(applied_b: dict | None) -> dict:
    return {
        "spec": {"network": {"latency": 0, "jitter": 0, "loss": 0, "matrix": [
            {"from": "zone-a", "to": "zone-b", "delay": 0, "jitter": 0, "loss": 0, "rate": 4,
             "symmetric": True},
        ]}},
        "nodes": [
            {"name": "n2", "labels": {"topology.kubernetes.io/zone": "zone-a"}},
            {"name": "n4", "labels": {"topology.kubernetes.io/zone": "zone-b"}},
        ],
        "pods": [
            {"name": "p-0", "node": "n2", "network_applied": {"in_sync": True, "links": [
                {"to": "zone-b", "rate_mbit": 4.0, "delay_ms": 0.0, "jitter_ms": 0.0,
                 "loss_percent": 0.0, "peers": 1}]}},
            {"name": "p-1", "node": "n4", "network_applied": applied_b},
            {"name": "p-loadgen-x", "node": "n2", "network_applied": None},
        ],
    }  # fmt: skip


def test_the_datasets_table_holds_each_link_configured_and_applied() -> None:
    from nuclab.netagent import accuracy

    wrong = {"in_sync": False, "error": "tc: boom", "links": [
        {"to": "zone-a", "rate_mbit": 2.0, "delay_ms": 0.0, "jitter_ms": 0.0,
         "loss_percent": 0.0, "peers": 1}]}  # fmt: skip
    rows = {(r["from"], r["to"]): r for r in accuracy.links(_manifest(wrong))}
    assert set(rows) == {("zone-a", "zone-b"), ("zone-b", "zone-a")}
    ab, ba = rows[("zone-a", "zone-b")], rows[("zone-b", "zone-a")]
    assert ab["configured"]["rate_mbit"] == 4.0 and ab["applied"]["rate_mbit"] == [4.0]
    assert (ab["peers"], ab["peers_in_sync"]) == (1, 1) and accuracy.matches(ab)
    assert ba["applied"]["rate_mbit"] == [2.0] and not accuracy.matches(ba)
    # a peer without an agent's record (no agent on its node) is not counted as carrying it
    rows = {(r["from"], r["to"]): r for r in accuracy.links(_manifest(None))}
    assert rows[("zone-b", "zone-a")]["peers"] == 0
    assert not accuracy.matches(rows[("zone-b", "zone-a")])
