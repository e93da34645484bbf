"""Bad input to playbooks/cluster.yml fails in the preflight, naming host and problem.

Each case runs the real playbook with ansible-playbook against podman hosts started from the
nuclab test image (tools/images/build-debian-image.sh, built by `make setup`): real facts from
a real Debian userland. The unsupported OS is a host whose os-release says Debian 11; the
unsupported architecture is a host whose Python runs under `setarch i686`. The cases that are
about the inventory (tokens, lab_role, HA size) map several inventory names onto one container.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/nuclab/debian-systemd:bookworm"
ENV = {
    **os.environ,
    # netavark (podman's network) runs iptables from /usr/sbin.
    "PATH": os.pathsep.join([str(REPO / ".venv" / "bin"), os.environ.get("PATH", ""), "/usr/sbin"]),
    "CONTAINERS_CONF": str(REPO / "tools" / "containers.conf"),
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
    "ANSIBLE_FORCE_COLOR": "0",
    "ANSIBLE_NOCOLOR": "1",
}
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"


def _podman(*args: str) -> str:
    return subprocess.run(
        ["podman", *args], env=ENV, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def containers() -> Iterator[dict[str, str]]:
    """Four throwaway hosts: a good Debian 12, a 'Debian 11', an 'i686' machine, and a Debian 12
    without any network (an airgapped node)."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make setup` (tools/apt-packages.txt)")
    if subprocess.run(["podman", "image", "exists", IMAGE], env=ENV, check=False).returncode:
        pytest.fail(f"{IMAGE} is missing: run `make setup` (tools/setup.d/20-debian-image.sh)")
    suffix = uuid.uuid4().hex[:6]
    names = {kind: f"k3sp-{kind}-{suffix}" for kind in ("good", "old", "i686", "offline")}
    try:
        for kind, name in names.items():
            network = ["--network", "none"] if kind == "offline" else []
            _podman("run", "-d", "--name", name, *network, IMAGE, "sleep", "infinity")
        _podman(
            "exec",
            names["old"],
            "sh",
            "-c",
            'printf \'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\\nNAME="Debian GNU/Linux"\\n'
            'VERSION_ID="11"\\nVERSION="11 (bullseye)"\\nVERSION_CODENAME=bullseye\\nID=debian\\n\''
            " > /etc/os-release; echo 11.11 > /etc/debian_version",
        )
        _podman(
            "exec",
            names["i686"],
            "sh",
            "-c",
            "printf '#!/bin/sh\\nexec setarch i686 /usr/bin/python3 \"$@\"\\n'"
            " > /usr/local/bin/python3-i686 && chmod 755 /usr/local/bin/python3-i686",
        )
        yield names
    finally:
        for name in names.values():
            subprocess.run(
                ["podman", "rm", "-f", "-t", "0", name], env=ENV, capture_output=True, check=False
            )


def _host(container: str, **hostvars: object) -> dict[str, object]:
    return {
        "ansible_connection": "containers.podman.podman",
        "ansible_host": container,
        "ansible_python_interpreter": "/usr/bin/python3",
        **hostvars,
    }


def _run(
    tmp_path: Path, servers: dict, agents: dict, *args: str
) -> subprocess.CompletedProcess[str]:
    inventory = {
        "all": {
            "vars": {
                "lab_name": "preflight-test",
                "lab_k3s_version": "v1.35.4+k3s1",
                "common_require_ntp_sync": False,
            },
            "children": {
                "k3s_cluster": {
                    "children": {"server": {"hosts": servers}, "agent": {"hosts": agents}}
                }
            },
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    result = subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            str(tmp_path / "hosts.yml"),
            str(REPO / "playbooks" / "cluster.yml"),
            *args,
        ],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return result


def _nothing_changed(container: str) -> bool:
    listing = _podman(
        "exec", container, "sh", "-c", "ls /etc/rancher /etc/sysctl.d/90-nuclab-k3s.conf || true"
    )
    return listing.strip() == ""


def test_unsupported_os_fails_naming_host_and_os(tmp_path: Path, containers) -> None:
    result = _run(
        tmp_path,
        {"nuc-master": _host(containers["good"], lab_role="server")},
        {"nuc-old": _host(containers["old"], lab_role="worker")},
    )
    assert result.returncode == 2, result.stdout
    assert "nuc-old: operating system Debian 11" in result.stdout
    assert "is not supported (allowed: Debian 12/13" in result.stdout
    # the good host was not touched either: the preflight stops the whole lab
    assert _nothing_changed(containers["good"])


def test_unsupported_architecture_fails_naming_host_and_arch(tmp_path: Path, containers) -> None:
    result = _run(
        tmp_path,
        {"nuc-master": _host(containers["good"], lab_role="server")},
        {
            "nuc-pi": _host(
                containers["i686"],
                lab_role="worker",
                ansible_python_interpreter="/usr/local/bin/python3-i686",
            )
        },
    )
    assert result.returncode == 2, result.stdout
    assert "nuc-pi: architecture i386 is not supported (allowed: x86_64, aarch64)" in result.stdout
    assert _nothing_changed(containers["good"])


def test_two_servers_without_a_shared_token_fail(tmp_path: Path, containers) -> None:
    result = _run(
        tmp_path,
        {
            "nuc-a": _host(containers["good"], lab_role="server", lab_k3s_token="only-on-a"),
            "nuc-b": _host(containers["good"], lab_role="server"),
        },
        {},
        "--tags",
        "lab_preflight",
    )
    assert result.returncode == 2, result.stdout
    assert "servers nuc-a, nuc-b: lab_k3s_token differs between them" in result.stdout
    assert "nuc-a: set, nuc-b: not set" in result.stdout
    assert "only-on-a" not in result.stdout + result.stderr  # a token is never printed


def test_even_number_of_servers_warns_and_goes_on(tmp_path: Path, containers) -> None:
    servers = {
        f"nuc-{i}": _host(containers["good"], lab_role="server", lab_k3s_token="shared")
        for i in (1, 2)
    }
    result = _run(tmp_path, servers, {}, "--tags", "lab_preflight")
    assert result.returncode == 0, result.stdout
    assert "WARNING: 2 servers: embedded etcd needs a majority" in result.stdout


def test_odd_number_of_servers_does_not_warn(tmp_path: Path, containers) -> None:
    servers = {
        f"nuc-{i}": _host(containers["good"], lab_role="server", lab_k3s_token="shared")
        for i in (1, 2, 3)
    }
    result = _run(tmp_path, servers, {}, "--tags", "lab_preflight")
    assert result.returncode == 0, result.stdout
    assert "embedded etcd needs a majority" not in result.stdout


def test_missing_lab_role_fails_naming_host(tmp_path: Path, containers) -> None:
    result = _run(
        tmp_path,
        {"nuc-master": _host(containers["good"], lab_role="server")},
        {"nuc-3": _host(containers["good"])},
        "--tags",
        "lab_preflight",
    )
    assert result.returncode == 2, result.stdout
    assert (
        "nuc-3: lab_role = (not set) is not allowed for a host in group agent"
        " (allowed: client, worker)"
    ) in result.stdout


def test_unreachable_host_stops_the_lab_before_any_change(tmp_path: Path, containers) -> None:
    result = _run(
        tmp_path,
        {"nuc-master": _host(containers["good"], lab_role="server")},
        {"nuc-gone": _host("k3sp-no-such-container", lab_role="worker")},
    )
    assert result.returncode != 0, result.stdout
    assert "fatal: [nuc-gone]: UNREACHABLE!" in result.stdout
    assert "Prepare the operating system" not in result.stdout
    assert _nothing_changed(containers["good"])


def test_unsynchronised_clock_fails_when_ntp_is_required(tmp_path: Path, containers) -> None:
    result = _run(
        tmp_path,
        {"nuc-master": _host(containers["good"], lab_role="server", common_require_ntp_sync=True)},
        {},
        "--tags",
        "lab_preflight",
    )
    assert result.returncode == 2, result.stdout
    assert "nuc-master: time is not synchronised" in result.stdout


def test_kubelet_node_role_labels_are_refused(tmp_path: Path, containers) -> None:
    result = _run(
        tmp_path,
        {"nuc-master": _host(containers["good"], lab_role="server")},
        {
            "nuc-1": _host(
                containers["good"],
                lab_role="worker",
                k3s_agent_config={"node-label": ["node-role.kubernetes.io/worker=true"]},
            )
        },
        "--tags",
        "lab_preflight",
    )
    assert result.returncode == 2, result.stdout
    assert "nuc-1: k3s_agent_config = " in result.stdout
    assert "without node-role.kubernetes.io/* labels" in result.stdout


def test_airgap_mode_installs_nothing_and_names_the_missing_package(
    tmp_path: Path, containers
) -> None:
    # An airgapped node (no network at all) lacks one of common_packages (jq is not in the
    # image). Online mode would install it with apt; airgap mode must fetch nothing, so the
    # preflight stops the lab, naming it, before any host changes.
    airgap = tmp_path / "k3s-release"
    airgap.mkdir()
    (airgap / "k3s").write_text("placeholder: the preflight only looks for the file\n")
    missing = _podman("exec", containers["offline"], "sh", "-c", "command -v jq || echo absent")
    assert missing.strip() == "absent"
    result = _run(
        tmp_path,
        {"nuc-master": _host(containers["offline"], lab_role="server")},
        {},
        "-e",
        f"lab_k3s_install_mode=airgap lab_k3s_airgap_dir={airgap}",
        "-e",
        '{"common_packages": ["ca-certificates", "curl", "iptables", "kmod", "procps", "jq"]}',
    )
    assert result.returncode == 2, result.stdout
    assert "nuc-master: common_packages jq not installed, and install mode airgap" in result.stdout
    assert "Install the missing packages" not in result.stdout
    assert _nothing_changed(containers["offline"])
