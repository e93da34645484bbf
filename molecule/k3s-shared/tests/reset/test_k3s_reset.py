"""After playbooks/reset.yml: nothing the lab put on a node (or on the controller) is left."""

from __future__ import annotations

import os
from pathlib import Path

INVENTORY_DIR = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent

GONE = [
    "/usr/local/bin/k3s",
    "/usr/local/bin/kubectl",
    "/usr/local/bin/crictl",
    "/usr/local/bin/ctr",
    "/etc/systemd/system/k3s.service",
    "/etc/systemd/system/k3s-agent.service",
    "/etc/rancher",
    "/var/lib/rancher",
    "/var/lib/kubelet",
    "/run/k3s",
    "/etc/sysctl.d/90-nuclab-k3s.conf",
    "/etc/sysctl.d/90-kubelet.conf",
    "/etc/modules-load.d/nuclab-k3s.conf",
]


def test_k3s_files_are_gone(host) -> None:
    left = [path for path in GONE if host.file(path).exists]
    assert left == []


def test_k3s_units_are_gone(host) -> None:
    # systemctl exits 1 when no unit file matches: the output is what counts.
    units = host.run("systemctl list-unit-files --no-legend 'k3s*'")
    assert units.stdout.strip() == "", units.stdout
    assert not host.service("k3s").is_running
    assert not host.service("k3s-agent").is_running


def test_no_test_double_process_is_left(host) -> None:
    assert host.process.filter(comm="k3s") == []


def test_kernel_arguments_and_firewall_rules_are_undone(host) -> None:
    cmdline = host.file("/boot/firmware/cmdline.txt")
    if cmdline.exists:
        words = cmdline.content_string.split()
        assert "cgroup_memory=1" not in words
        assert "cgroup_enable=memory" not in words
        assert words[-1] == "rootwait"
    if host.lab.get("prepare_ufw_active"):
        rules = host.check_output("ufw status")
        assert "Status: active" in rules
        assert "10250/tcp" not in rules
        assert "nuclab-k3s" not in rules
        assert "10.42.0.0/16" not in rules


def test_controller_keeps_no_kubeconfig_or_generated_token() -> None:
    assert not (INVENTORY_DIR / "artifacts" / "kubeconfig").exists()
    assert not (INVENTORY_DIR / ".state" / "k3s-token").exists()
