"""What the k3s roles leave on a converged node, on podman systemd hosts.

The hosts run a TEST DOUBLE of the k3s binary (see k3s-test-double.py.j2): these tests prove
what the roles do around K3s (files, modes, units, sysctls, restarts, kubeconfig artifact),
never that a Kubernetes cluster runs. Kernel modules cannot be shown here: this machine's
kernel has no loadable modules (no /proc/modules), so only the boot-time list is checked.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import socket
import stat
from pathlib import Path

import testinfra
import yaml

REPO = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
INVENTORY_DIR = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
VERSION = yaml.safe_load((REPO / "versions.yml").read_text())["lab_k3s_version"]
SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
}


def _groups(host) -> list[str]:
    return host.lab["group_names"]


def _servers(host) -> list[str]:
    return sorted(host.lab["groups"]["server"])


def _unit(host) -> str:
    return "k3s" if "server" in _groups(host) else "k3s-agent"


def _config(host) -> dict:
    return yaml.safe_load(host.file("/etc/rancher/k3s/config.yaml").content_string)


def _token(host) -> str:
    given = host.lab.get("lab_k3s_token", "")
    return given or (INVENTORY_DIR / ".state" / "k3s-token").read_text()


def test_token_is_given_or_generated_once_and_kept_0600_on_the_controller(host) -> None:
    path = INVENTORY_DIR / ".state" / "k3s-token"
    if host.lab.get("lab_k3s_token"):
        assert not path.exists()  # a given token is never written to the controller
        return
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(path.read_text()) == 48
    assert path.read_text().isalnum()


def test_config_is_0600_root_and_holds_the_shared_token(host) -> None:
    config = host.file("/etc/rancher/k3s/config.yaml")
    assert config.user == "root"
    assert config.mode == 0o600
    assert _config(host)["token"] == _token(host)
    assert _config(host)["node-name"] == host.backend.get_hostname()


def test_config_has_no_kubelet_node_role_labels(host) -> None:
    labels = _config(host).get("node-label", [])
    assert not [label for label in labels if label.startswith("node-role.kubernetes.io/")]


def test_server_config_matches_its_place_in_the_cluster(host) -> None:
    if "server" not in _groups(host):
        return
    servers = _servers(host)
    config = _config(host)
    me = host.backend.get_hostname()
    assert config["write-kubeconfig-mode"] == "0600"
    assert config["tls-san"] == [servers[0]]
    if len(servers) == 1:
        assert "cluster-init" not in config
        assert "server" not in config
    elif me == servers[0]:
        assert config["cluster-init"] is True
        assert "server" not in config
    else:
        assert config["server"] == f"https://{servers[0]}:6443"
        assert "cluster-init" not in config


def test_server_config_passes_the_lab_client_rates_to_the_controllers(host) -> None:
    """lab_controller_manager_* and lab_scheduler_* (Kubernetes' defaults when unset) reach the
    controller-manager and the scheduler that K3s runs, as the simulated lab's get them."""
    if "server" not in _groups(host):
        return
    config = _config(host)
    for component, prefix, default_qps, default_burst in (
        ("kube-controller-manager", "lab_controller_manager", 20, 30),
        ("kube-scheduler", "lab_scheduler", 50, 100),
    ):
        qps = host.lab.get(f"{prefix}_qps", default_qps)
        burst = host.lab.get(f"{prefix}_burst", default_burst)
        assert config[f"{component}-arg"][:2] == [f"kube-api-qps={qps}", f"kube-api-burst={burst}"]


CIPHERS = (
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,"
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,"
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"
)
SERVER_DIR = "/var/lib/rancher/k3s/server"


def test_config_carries_the_cis_hardening_settings(host) -> None:
    """K3s' CIS hardening guide (v1.29 and newer), on by default: every node's kubelet, and on
    servers the API server's admission, audit and encryption settings."""
    config = _config(host)
    assert config["protect-kernel-defaults"] is True
    assert config["kubelet-arg"] == [
        "streaming-connection-idle-timeout=5m",
        f"tls-cipher-suites={CIPHERS}",
    ]
    if "server" not in _groups(host):
        assert "kube-apiserver-arg" not in config and "secrets-encryption" not in config
        return
    assert config["secrets-encryption"] is True
    assert config["kube-apiserver-arg"] == [
        "enable-admission-plugins=NodeRestriction,EventRateLimit",
        f"admission-control-config-file={SERVER_DIR}/psa.yaml",
        f"audit-log-path={SERVER_DIR}/logs/audit.log",
        f"audit-policy-file={SERVER_DIR}/audit.yaml",
        "audit-log-maxage=30",
        "audit-log-maxbackup=10",
        "audit-log-maxsize=100",
        "service-account-extend-token-expiration=false",
    ]
    assert config["kube-controller-manager-arg"][2:] == ["terminated-pod-gc-threshold=100"]


def test_servers_have_the_admission_configuration_and_audit_policy_root_only(host) -> None:
    if "server" not in _groups(host):
        assert not host.file(f"{SERVER_DIR}/psa.yaml").exists
        return
    for folder in (SERVER_DIR, f"{SERVER_DIR}/logs"):
        found = host.file(folder)
        assert (found.is_directory, found.user, found.mode) == (True, "root", 0o700), folder
    files = {}
    for name in ("psa.yaml", "audit.yaml"):
        found = host.file(f"{SERVER_DIR}/{name}")
        assert (found.user, found.mode) == ("root", 0o600), name
        files[name] = yaml.safe_load(found.content_string)
    plugins = {p["name"]: p["configuration"] for p in files["psa.yaml"]["plugins"]}
    assert files["psa.yaml"]["kind"] == "AdmissionConfiguration"
    pod_security = plugins["PodSecurity"]
    assert pod_security["defaults"]["enforce"] == "restricted"
    assert pod_security["exemptions"]["namespaces"] == ["kube-system", "monitoring", "kafka"]
    assert plugins["EventRateLimit"]["limits"] == [
        {"type": "Namespace", "qps": 100, "burst": 400, "cacheSize": 2000}
    ]
    assert files["audit.yaml"]["kind"] == "Policy"
    assert files["audit.yaml"]["rules"] == [{"level": "Metadata"}]


def test_the_kubelets_kernel_settings_are_written_for_boot(host) -> None:
    # protect-kernel-defaults stops a kubelet whose kernel has other values. Written, not applied
    # here: they are the machine's, not a container's (group_vars: common_kubelet_sysctls_apply).
    found = host.file("/etc/sysctl.d/90-kubelet.conf")
    assert (found.user, found.mode) == ("root", 0o644)
    lines = [line for line in found.content_string.splitlines() if not line.startswith("#")]
    assert lines == [
        "vm.panic_on_oom=0",
        "vm.overcommit_memory=1",
        "kernel.panic=10",
        "kernel.panic_on_oops=1",
    ]


def test_agent_config_points_at_the_first_server(host) -> None:
    if "agent" not in _groups(host):
        return
    assert _config(host)["server"] == f"https://{_servers(host)[0]}:6443"


def test_binary_comes_from_the_airgap_folder_at_the_pinned_version(host) -> None:
    binary = host.file("/usr/local/bin/k3s")
    assert binary.mode == 0o755
    assert binary.user == "root"
    out = host.check_output("/usr/local/bin/k3s --version")
    assert VERSION in out
    assert "test double" in out  # never mistaken for K3s
    for name in ("kubectl", "crictl", "ctr"):
        assert host.file(f"/usr/local/bin/{name}").linked_to == "/usr/local/bin/k3s"


def test_image_tarballs_are_in_the_import_folder(host) -> None:
    tarball = host.file("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar")
    assert tarball.is_file
    assert tarball.mode == 0o644


def test_nuclab_image_archive_is_in_the_import_folder_and_was_not_imported_by_hand(host) -> None:
    # Copied before K3s first started: K3s imports the folder at start (the test double does
    # not: there is no containerd here), so the role ran no `k3s ctr images import`.
    source = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "images" / "nuclab-tools.tar"
    tarball = host.file("/var/lib/rancher/k3s/agent/images/nuclab-tools.tar")
    assert tarball.is_file and tarball.mode == 0o644
    assert tarball.sha256sum == hashlib.sha256(source.read_bytes()).hexdigest()
    assert not host.file("/var/lib/rancher/k3s/test-double/imports.log").exists


def test_unit_is_enabled_active_and_runs_the_binary(host) -> None:
    unit = _unit(host)
    service = host.service(unit)
    assert service.is_enabled
    assert service.is_running
    text = host.file(f"/etc/systemd/system/{unit}.service").content_string
    mode = "server" if unit == "k3s" else "agent"
    assert f"ExecStart=/usr/local/bin/k3s {mode}\n" in text
    assert "LimitNOFILE=1048576" in text
    other = "k3s-agent" if unit == "k3s" else "k3s"
    assert not host.file(f"/etc/systemd/system/{other}.service").exists


def test_k3s_started_once_across_converge_and_idempotent_rerun(host) -> None:
    starts = host.file("/var/lib/rancher/k3s/test-double/starts.log").content_string
    assert len(starts.splitlines()) == 1, starts


def test_sysctls_are_written_and_in_force(host) -> None:
    text = host.file("/etc/sysctl.d/90-nuclab-k3s.conf").content_string
    for key, value in SYSCTLS.items():
        assert f"{key}={value}" in text
        assert host.sysctl(key) == value


def test_kernel_modules_are_listed_for_boot(host) -> None:
    listed = host.file("/etc/modules-load.d/nuclab-k3s.conf")
    assert listed.mode == 0o644
    lines = [line for line in listed.content_string.splitlines() if not line.startswith("#")]
    assert lines == ["br_netfilter", "overlay"]


def test_swap_is_off(host) -> None:
    assert host.check_output("swapon --show --noheadings") == ""
    assert not [
        line
        for line in host.file("/etc/fstab").content_string.splitlines()
        if not line.startswith("#") and " swap " in line
    ]


def test_raspberry_pi_cgroup_arguments_are_added_once(host) -> None:
    if host.lab.get("common_raspberry_pi") is not True:
        return
    words = host.file("/boot/firmware/cmdline.txt").content_string.split()
    assert words.count("cgroup_memory=1") == 1
    assert words.count("cgroup_enable=memory") == 1
    assert words[0] == "console=serial0,115200"  # the rest of the line is kept


def _address(node) -> str:
    """The address of the node's default route: what the role opens the node ports to."""
    return node.check_output("ip -4 route get 1.1.1.1").split(" src ")[1].split()[0]


def _listen(node, port: int) -> None:
    """A TCP listener on every address of the node, for two minutes."""
    code = f"import socket,time; s=socket.create_server(('', {port})); s.listen(); time.sleep(120)"
    run = node.run(f"setsid -f python3 -c {shlex.quote(code)} >/dev/null 2>&1; sleep 0.5")
    assert run.rc == 0, run.stderr


def _connects(address: str, port: int, source=None) -> bool:
    """Whether a TCP connection to address:port opens within 3 s (from source, a host, or here)."""
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout=3).close()"
    if source is not None:
        return source.run(f"python3 -c {shlex.quote(code)}").rc == 0
    try:
        socket.create_connection((address, port), timeout=3).close()
    except OSError:
        return False
    return True


def test_active_firewall_opens_the_node_ports_to_the_labs_nodes_only(host) -> None:
    if not host.lab.get("prepare_ufw_active"):
        return
    rules = host.check_output("ufw status")
    assert "10.42.0.0/16" in rules
    assert "10.43.0.0/16" in rules
    for line in rules.splitlines():  # no node port is open to any source
        if line.startswith(("10250/tcp", "8472/udp", "51820/udp", "2379:2380/tcp")):
            assert "Anywhere" not in line, rules
    nodes = [testinfra.get_host(f"podman://{n}") for n in sorted(host.lab["groups"]["k3s_cluster"])]
    others = [n for n in nodes if n.backend.get_hostname() != host.backend.get_hostname()]
    address = _address(host)
    for node in nodes:  # each node's address, on every node port
        for port in ("10250/tcp", "8472/udp", "51820/udp"):
            assert re.search(rf"^{port} +ALLOW +{re.escape(_address(node))} ", rules, re.M), rules
    # The kubelet's port, for real: a listener on it here and on another node (no firewall
    # there). This machine, whose address is no node's, reaches the other node's (so it reaches
    # the hosts' network) but not this one's; the other node reaches this one's.
    other = others[0]
    for node in (host, other):
        _listen(node, 10250)
    try:
        assert _connects(_address(other), 10250)
        assert not _connects(address, 10250)
        assert _connects(address, 10250, other)
    finally:
        for node in (host, other):
            node.run("pkill -f socket.create_server")
    if "server" in _groups(host):
        assert re.search(r"^6443/tcp +ALLOW +Anywhere", rules, re.M), rules


def test_kubeconfig_artifact_is_0600_and_points_at_the_api_endpoint() -> None:
    path = INVENTORY_DIR / "artifacts" / "kubeconfig"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = yaml.safe_load(path.read_text())
    inventory = yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())
    first_server = sorted(inventory["server"]["hosts"])[0]
    assert doc["current-context"] == "molecule-k3s"
    assert [c["name"] for c in doc["contexts"]] == ["molecule-k3s"]
    assert doc["clusters"] == [
        {
            "name": "molecule-k3s",
            "cluster": {
                "server": f"https://{first_server}:6443",
                "certificate-authority-data": doc["clusters"][0]["cluster"][
                    "certificate-authority-data"
                ],
            },
        }
    ]
    assert set(doc["users"][0]["user"]) == {"client-certificate-data", "client-key-data"}
