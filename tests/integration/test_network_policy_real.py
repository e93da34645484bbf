"""NetworkPolicy on the simulated lab's real nodes, enforced by kube-router's firewall (a
process of each real node, as a K3s agent embeds it): experiment `np-blue` cannot reach
`np-purple` over TCP or UDP, nor can a pod that no policy selects; `np-purple`'s peers reach
each other by their stable names (DNS); the host (Prometheus, the API server's proxy) reaches
them; a pod of blue's loadgen policy reaches blue and nothing of purple; blue's real loadgen Job,
on the real client node nuc-1, cannot connect to purple's peers."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.realnodes import (
    NAMESPACE,
    REAL,
    REAL_CLIENT,
    create,
    nuclab,
    on_real_nodes,
    running_pods,
    wait_for,
)

PURPLE, BLUE = "np-purple", "np-blue"
TCP_PORT, UDP_PORT = 7000, 7001

# Serves TCP (accepts, answers "hi") and UDP (echo) when the first argument is "serve"; then
# probes each target NAME=HOST every 2 s over both and prints "tcp NAME ok|blocked" and
# "udp NAME ok|blocked" (a dropped packet is a timeout, so blocked means no answer in 2 s).
PROBE = rf"""
import socket, sys, threading, time
def tcp_server():
    server = socket.create_server(("", {TCP_PORT}))
    while True:
        conn, _ = server.accept(); conn.sendall(b"hi"); conn.close()
def udp_server():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sock.bind(("", {UDP_PORT}))
    while True:
        data, peer = sock.recvfrom(64); sock.sendto(data, peer)
args = sys.argv[1:]
if args and args[0] == "serve":
    args = args[1:]
    threading.Thread(target=tcp_server, daemon=True).start()
    threading.Thread(target=udp_server, daemon=True).start()
while True:
    for target in args:
        name, host = target.split("=")
        try:
            with socket.create_connection((host, {TCP_PORT}), timeout=2) as conn:
                tcp = "ok" if conn.recv(2) == b"hi" else "blocked"
        except OSError:
            tcp = "blocked"
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sock.settimeout(2)
            sock.sendto(b"ping", (host, {UDP_PORT}))
            udp = "ok" if sock.recv(64) == b"ping" else "blocked"
        except OSError:
            udp = "blocked"
        finally:
            sock.close()
        print(f"tcp {{name}} {{tcp}}", flush=True)
        print(f"udp {{name}} {{udp}}", flush=True)
    time.sleep(2)
"""


def _spec(name: str, args: list[str], **extra: Any) -> dict[str, Any]:
    return on_real_nodes(
        name=name, peers=2, ram=32, command=["python3", "-c"], args=[PROBE, *args], **extra
    )


def _create(tmp_path: Path, spec: dict[str, Any]) -> None:
    proc = create(tmp_path, spec)
    assert proc.returncode == 0, proc.stderr


def _running(core: Any, name: str, count: int) -> list[Any]:
    return running_pods(core, name, count, timeout=120)


def _verdicts(core: Any, pod: str) -> dict[str, str]:
    """The latest verdict per "tcp NAME" / "udp NAME" in the pod's log."""
    log = core.read_namespaced_pod_log(pod, NAMESPACE, container="peer" if "-exp-" in pod else None)
    found = re.findall(r"^(tcp|udp) (\S+) (ok|blocked)$", log, re.M)
    return {f"{proto} {name}": verdict for proto, name, verdict in found}


def _settle(core: Any, pod: str, want: dict[str, str], timeout: float = 60) -> None:
    """Wait until the pod's latest verdicts are ``want`` (the policy's rules reach the node's
    netfilter a moment after the pods start)."""

    def settled() -> bool:
        got = _verdicts(core, pod)
        return all(got.get(key) == value for key, value in want.items())

    try:
        wait_for(settled, timeout, f"{pod} to see {want}", step=2)
    except pytest.fail.Exception:
        pytest.fail(f"{pod}: wanted {want}, its log says {_verdicts(core, pod)}")


@pytest.fixture(scope="module")
def lab(core_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    core = core_api
    tmp = tmp_path_factory.mktemp("np")
    statefulset = f"nuclab-exp-{PURPLE}"
    service = f"{statefulset}-headless"
    # Purple's peers serve and probe each other by their stable names (DNS through the policy).
    _create(tmp, _spec(PURPLE, ["serve", f"sibling={statefulset}-1.{service}"]))
    purple = _running(core, PURPLE, 2)
    # Blue's peers probe purple's pod IPs; blue has a loadgen (and so its loadgen policy).
    targets = [f"purple{i}={p.status.pod_ip}" for i, p in enumerate(purple)]
    # Blue's loadgen Job aims at one of purple's peers (its preflight connect is the check).
    loadgen = {
        "enabled": True, "mode": "http", "url": f"http://{targets[0].split('=')[1]}:{TCP_PORT}/",
        "rate": 1, "duration": 5, "pushgateway": "", "args": ["--wait-for-target", "15s"],
    }  # fmt: skip
    _create(tmp, _spec(BLUE, ["serve", *targets], loadgen=loadgen))
    blue = _running(core, BLUE, 2)
    yield {"core": core, "purple": purple, "blue": blue, "targets": targets}
    for pod in ("np-blue-loadgen-probe", "np-stranger"):
        with contextlib.suppress(ApiException):  # a test that failed before creating it
            core.delete_namespaced_pod(pod, NAMESPACE, grace_period_seconds=0)
    for name in (PURPLE, BLUE):
        nuclab("delete", name, "--no-export", "-q", check=False)


def test_purples_peers_reach_each_other_by_name_over_tcp_and_udp(lab: dict[str, Any]) -> None:
    assert {p.spec.node_name for p in lab["purple"]} <= REAL
    _settle(lab["core"], lab["purple"][0].metadata.name, {"tcp sibling": "ok", "udp sibling": "ok"})


def test_the_host_reaches_purples_peers_as_prometheus_and_the_api_proxy_do(
    lab: dict[str, Any],
) -> None:
    ip = lab["purple"][0].status.pod_ip
    with socket.create_connection((ip, TCP_PORT), timeout=5) as conn:
        assert conn.recv(2) == b"hi"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"ping", (ip, UDP_PORT))
        assert sock.recv(64) == b"ping"


def test_blue_cannot_reach_purple_over_tcp_or_udp(lab: dict[str, Any]) -> None:
    core, pod = lab["core"], lab["blue"][0].metadata.name
    blocked = {f"{proto} purple{i}": "blocked" for proto in ("tcp", "udp") for i in range(2)}
    _settle(core, pod, blocked)
    time.sleep(6)  # and it stays so: later rounds say the same
    _settle(core, pod, blocked, timeout=5)


def test_blues_real_loadgen_job_on_the_client_node_cannot_connect_to_purple(
    lab: dict[str, Any],
) -> None:
    core = lab["core"]
    selector = f"nuclab.io/experiment={BLUE},app.kubernetes.io/component=loadgen"

    def finished() -> Any:
        found = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        return found[0] if found and found[0].status.phase in ("Succeeded", "Failed") else None

    pod = wait_for(finished, 120, "blue's loadgen Job to end")
    assert pod.spec.node_name == REAL_CLIENT
    log = core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE)
    url = f"http://{lab['purple'][0].status.pod_ip}:{TCP_PORT}/"
    assert pod.status.phase == "Failed", log
    assert f"cannot connect to {url} within 15s of tries" in log, log


def _probe_pod(core: Any, name: str, labels: dict[str, str], image: str, targets: list[str]) -> str:
    """A pod on a real node that runs PROBE against ``targets`` (not a peer of any experiment)."""
    core.create_namespaced_pod(
        NAMESPACE,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "nodeSelector": {"nuclab.io/node-kind": "real"},
                "automountServiceAccountToken": False,
                # Pod Security restricted, which the experiment namespace enforces
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65534,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "probe",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": ["python3", "-c", PROBE, *targets],
                        "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod(name, NAMESPACE).status.phase == "Running",
        60,
        f"pod {name} to run",
    )
    return name


def test_a_pod_of_blues_loadgen_policy_reaches_blue_and_nothing_of_purple(
    lab: dict[str, Any],
) -> None:
    core = lab["core"]
    policy = client.NetworkingV1Api(core.api_client).read_namespaced_network_policy(
        f"nuclab-exp-{BLUE}.loadgen", NAMESPACE
    )
    labels = {**policy.spec.pod_selector.match_labels, "nuclab.io/experiment": BLUE}
    blue = [f"blue{i}={p.status.pod_ip}" for i, p in enumerate(lab["blue"])]
    image = lab["blue"][0].spec.containers[0].image
    pod = _probe_pod(core, "np-blue-loadgen-probe", labels, image, blue + lab["targets"])
    want = {f"{proto} blue{i}": "ok" for proto in ("tcp", "udp") for i in range(2)}
    want |= {f"{proto} purple{i}": "blocked" for proto in ("tcp", "udp") for i in range(2)}
    _settle(core, pod, want)


def test_a_pod_no_policy_selects_cannot_reach_purple_until_purples_policy_is_gone(
    lab: dict[str, Any],
) -> None:
    """Purple's ingress rules alone keep out a pod that has no policy of its own; without
    purple's policy the same probes are answered (the path works, the policy blocked it)."""
    core = lab["core"]
    image = lab["purple"][0].spec.containers[0].image
    pod = _probe_pod(core, "np-stranger", {"app": "np-stranger"}, image, lab["targets"])
    blocked = {f"{proto} purple{i}": "blocked" for proto in ("tcp", "udp") for i in range(2)}
    _settle(core, pod, blocked)
    client.NetworkingV1Api(core.api_client).delete_namespaced_network_policy(
        f"nuclab-exp-{PURPLE}", NAMESPACE
    )
    _settle(core, pod, {key: "ok" for key in blocked})
