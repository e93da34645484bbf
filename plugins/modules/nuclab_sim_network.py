#!/usr/bin/python
# Copyright: nuclab contributors
# Apache License 2.0
"""Ansible module: the network of the simulated lab's real nodes (bridge, netns, veth, routes)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nuclab_sim_network
short_description: The network of the simulated lab's real nodes
description:
  - Gives each real node of the simulated lab a network namespace with one interface C(eth0)
    on a bridge of this machine, as the NICs of a lab's nodes are on one switch. The machine
    holds the bridge's address, where the nodes reach the control plane; and the machine
    reaches every pod through a route to each node's pod network via that node.
  - Each node routes the other nodes' pod networks via their addresses (what flannel's
    host-gw backend does on K3s), forwards packets, and passes bridged packets through
    netfilter (kube-proxy and the network policies need both).
  - With I(state=absent), removes the namespaces of the listed nodes and the bridge (the veths
    and routes go with them).
options:
  bridge:
    description: Name of the bridge on this machine.
    type: str
    required: true
  address:
    description: The machine's address on the bridge, with its prefix length (C(10.41.0.1/24)).
    type: str
    required: true
  nodes:
    description:
      - The real nodes, as the filter C(nuclab_sim_real_nodes) returns them
        (C(name), C(netns), C(host_link), C(address), C(pod_cidr)).
    type: list
    elements: dict
    default: []
  state:
    description: Whether the network should exist.
    type: str
    choices: [present, absent]
    default: present
author: nuclab contributors
"""

EXAMPLES = r"""
- name: Create the real nodes' network
  nuclab_sim_network:
    bridge: nlsim0
    address: 10.41.0.1/24
    nodes:
      - {name: nuc-2, netns: nuclab-nuc-2, host_link: nlsim1, address: 10.41.0.11/24,
         pod_cidr: 10.42.1.0/24}
"""

RETURN = r"""
netem:
  description: Whether this machine's kernel can shape with netem (probed in a node's namespace).
  returned: when state is present and there are nodes
  type: bool
actions:
  description: What the module changed, one line each.
  returned: always
  type: list
  elements: str
"""

import json
import os
import subprocess

from ansible.module_utils.basic import AnsibleModule

# Per network namespace: forward packets (the node routes its pods' traffic), let bridged
# packets through iptables (kube-proxy's DNAT between pods on one node), accept packets routed
# back asymmetrically between nodes.
NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}


class Net:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.actions: list[str] = []

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            self.module.fail_json(
                msg=f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}",
                actions=self.actions,
            )
        return proc

    def change(self, what: str, *argv: str) -> None:
        self.actions.append(what)
        if not self.module.check_mode:
            self.run(*argv)

    def ip_json(self, netns: str | None, *args: str) -> list[dict]:
        prefix = ["ip", "-j"] + (["-n", netns] if netns else [])
        proc = self.run(*prefix, *args, check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            return []
        return json.loads(proc.stdout)

    def link(self, netns: str | None, name: str) -> dict | None:
        found = self.ip_json(netns, "link", "show", "dev", name)
        return found[0] if found else None

    def addresses(self, netns: str | None, name: str) -> set[str]:
        found = self.ip_json(netns, "addr", "show", "dev", name)
        return {f"{a['local']}/{a['prefixlen']}" for d in found for a in d.get("addr_info", [])}

    def route(self, netns: str | None, dst: str) -> dict | None:
        found = self.ip_json(netns, "route", "show", "exact", dst)
        return found[0] if found else None

    def ensure_route(self, netns: str | None, dst: str, via: str, dev: str) -> None:
        have = self.route(netns, dst)
        if have and have.get("gateway") == via and have.get("dev") == dev:
            return
        where = f"in {netns}" if netns else "on this machine"
        ip = ["ip", "-n", netns] if netns else ["ip"]
        self.change(
            f"route {dst} via {via} {where}", *ip, "route", "replace", dst, "via", via, "dev", dev
        )

    def sysctl(self, netns: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        have = self.run("nsenter", f"--net=/run/netns/{netns}", "cat", path, check=False)
        if have.returncode == 0 and have.stdout.strip() == value:
            return
        enter = ["nsenter", f"--net=/run/netns/{netns}"]
        self.change(f"{key}={value} in {netns}", *enter, "sysctl", "-q", "-w", f"{key}={value}")


def bridge_present(net: Net, bridge: str, address: str) -> None:
    if net.link(None, bridge) is None:
        net.change(f"bridge {bridge}", "ip", "link", "add", bridge, "type", "bridge")
    if address not in net.addresses(None, bridge):
        net.change(f"address {address} on {bridge}", "ip", "addr", "add", address, "dev", bridge)
    if "UP" not in (net.link(None, bridge) or {}).get("flags", ["UP"]):
        net.change(f"{bridge} up", "ip", "link", "set", bridge, "up")


def node_present(net: Net, bridge: str, gateway: str, node: dict) -> None:
    ns, host_link = node["netns"], node["host_link"]
    if not os.path.exists(f"/run/netns/{ns}"):
        net.change(f"network namespace {ns}", "ip", "netns", "add", ns)
    if "UP" not in (net.link(ns, "lo") or {}).get("flags", ["UP"]):
        net.change(f"lo up in {ns}", "ip", "-n", ns, "link", "set", "lo", "up")
    if net.link(ns, "eth0") is None:
        if net.link(None, host_link) is not None:  # half of a pair whose node lost its end
            net.change(f"stale {host_link}", "ip", "link", "del", host_link)
        veth = ["type", "veth", "peer", "name", "eth0", "netns", ns]
        net.change(f"veth {host_link} to {ns} eth0", "ip", "link", "add", host_link, *veth)
    host_end = net.link(None, host_link) or {}
    if host_end.get("master") != bridge:
        net.change(f"{host_link} on {bridge}", "ip", "link", "set", host_link, "master", bridge)
    if "UP" not in host_end.get("flags", []):
        net.change(f"{host_link} up", "ip", "link", "set", host_link, "up")
    inside = ["ip", "-n", ns]
    if node["address"] not in net.addresses(ns, "eth0"):
        add = ["addr", "add", node["address"], "dev", "eth0"]
        net.change(f"address {node['address']} in {ns}", *inside, *add)
    if "UP" not in (net.link(ns, "eth0") or {}).get("flags", []):
        net.change(f"eth0 up in {ns}", *inside, "link", "set", "eth0", "up")
    default = net.route(ns, "default")
    if not default or default.get("gateway") != gateway:
        route = ["route", "replace", "default", "via", gateway, "dev", "eth0"]
        net.change(f"default route via {gateway} in {ns}", *inside, *route)
    for key, value in NODE_SYSCTLS.items():
        net.sysctl(ns, key, value)


def present(net: Net, bridge: str, address: str, nodes: list[dict]) -> None:
    bridge_present(net, bridge, address)
    gateway = address.split("/", 1)[0]
    for node in nodes:
        node_present(net, bridge, gateway, node)
    for node in nodes:
        via = node["address"].split("/", 1)[0]
        net.ensure_route(None, node["pod_cidr"], via, bridge)
        for other in nodes:
            if other["name"] != node["name"]:
                net.ensure_route(other["netns"], node["pod_cidr"], via, "eth0")


def netem_works(net: Net, netns: str) -> bool:
    """Whether a netem qdisc can be added here (tried on a veth pair, removed after)."""
    probe = "nlnetem0"
    net.run("ip", "-n", netns, "link", "del", probe, check=False)
    net.run("ip", "-n", netns, "link", "add", probe, "type", "veth", "peer", "name", probe + "p")
    try:
        qdisc = ["tc", "-n", netns, "qdisc", "add", "dev", probe, "root", "netem", "delay", "1ms"]
        return net.run(*qdisc, check=False).returncode == 0
    finally:
        net.run("ip", "-n", netns, "link", "del", probe, check=False)


def absent(net: Net, bridge: str, nodes: list[dict]) -> None:
    for node in nodes:
        if os.path.exists(f"/run/netns/{node['netns']}"):
            net.change(f"removed {node['netns']}", "ip", "netns", "del", node["netns"])
        if net.link(None, node["host_link"]) is not None:
            net.change(f"removed {node['host_link']}", "ip", "link", "del", node["host_link"])
    if net.link(None, bridge) is not None:
        net.change(f"removed {bridge}", "ip", "link", "del", bridge)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "bridge": {"type": "str", "required": True},
            "address": {"type": "str", "required": True},
            "nodes": {"type": "list", "elements": "dict", "default": []},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        },
        supports_check_mode=True,
    )
    net = Net(module)
    p = module.params
    result: dict = {}
    if p["state"] == "present":
        present(net, p["bridge"], p["address"], p["nodes"])
        if p["nodes"] and not module.check_mode:
            result["netem"] = netem_works(net, p["nodes"][0]["netns"])
    else:
        absent(net, p["bridge"], p["nodes"])
    module.exit_json(changed=bool(net.actions), actions=net.actions, **result)


if __name__ == "__main__":
    main()
