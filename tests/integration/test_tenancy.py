"""Research groups on the simulated lab (inventory/sim's lab_groups alpha and beta): each acts
only in its own namespace, with the kubeconfig site.yml wrote for it, through the lab's real RBAC
(kube-apiserver --authorization-mode=Node,RBAC) and, between pods, the real nodes' NetworkPolicy
(kube-router's firewall).

Group alpha runs `purple` on the real nodes; group beta tries what a second group would, and
every attempt must be refused with alpha's experiment unchanged (same generation, same peers,
same release revision). Beta's own `purple` is a different experiment in beta's namespace: the
bug of a single shared namespace (a second group's create silently rescaled the first one's) is
what the first check proves gone.

In its own namespace a group may run only what Pod Security "restricted" admits: the namespaces
enforce it, and the ValidatingAdmissionPolicy `nuclab-group-pods` holds the same line again (it
alone refuses sysctls; tests/integration/test_cis_apiserver.py shows it holding without Pod
Security). Every way out of the pod (privileged, host namespaces, hostPath, root, capabilities,
NET_ADMIN as the old netem init container had it: the node agent shapes now) is tried against the
real API server's admission (server-side dry run: nothing is created even if one were admitted).

Not covered here (issue 14, still open): Kafka, Prometheus and Loki have no per-group
credentials, and the node probe's replies.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.conftest import TOOLS_BIN
from tests.integration.conftest import SIM_INVENTORY, run_playbook
from tests.integration.realnodes import NUCLAB, REAL, wait_for

ARTIFACTS = SIM_INVENTORY / "artifacts"
ALPHA, BETA = "nuclab-alpha", "nuclab-beta"
NAME = "purple"
METRICS_PORT = 9464  # the default peer's /metrics
IMAGE = "localhost/nuclab/never-pulled:dry-run"  # server-side dry runs only: never run


def as_group(group: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`nuclab ARGS` with a group's kubeconfig and the simulated lab's inventory."""
    kubeconfig = ARTIFACTS / f"{group}.kubeconfig"
    return subprocess.run(
        [NUCLAB, *args, "-i", str(SIM_INVENTORY), "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        check=False,
    )


def kubectl(group: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOOLS_BIN / "kubectl"), "--kubeconfig", str(ARTIFACTS / f"{group}.kubeconfig"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def refused(proc: subprocess.CompletedProcess[str]) -> str:
    """The attempt failed, and because the API forbade it (not for another reason)."""
    assert proc.returncode != 0, proc.stdout
    out = proc.stdout + proc.stderr
    assert "forbidden" in out.lower() or "403" in out, out
    return out


class Lab:
    def __init__(self, kubeconfig: Path) -> None:
        api = config.new_client_from_config(str(kubeconfig))
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    def statefulset(self, namespace: str) -> Any:
        return self.apps.read_namespaced_stateful_set(f"nuclab-exp-{NAME}", namespace)

    def state(self, namespace: str) -> tuple[Any, ...]:
        """What any change to the experiment would change: spec, generation, release revision."""
        sts = self.statefulset(namespace)
        releases = self.core.list_namespaced_secret(namespace, label_selector="owner=helm").items
        return (
            sts.metadata.generation,
            sts.spec.replicas,
            sts.metadata.resource_version,
            sorted(s.metadata.name for s in releases),
        )

    def peers(self, namespace: str, count: int) -> list[Any]:
        def running() -> list[Any] | None:
            found = [
                p
                for p in self.core.list_namespaced_pod(
                    namespace, label_selector=f"nuclab.io/experiment={NAME}"
                ).items
                if p.status.phase == "Running" and p.status.pod_ip
            ]
            return sorted(found, key=lambda p: p.metadata.name) if len(found) == count else None

        return wait_for(running, 120, f"{count} running peer(s) of {NAME} in {namespace}")


@pytest.fixture(scope="module")
def lab(sim_lab: Path) -> Iterator[Lab]:
    for group in ("alpha", "beta"):
        path = ARTIFACTS / f"{group}.kubeconfig"
        assert path.is_file(), f"site.yml wrote no kubeconfig for group {group}"
        assert path.stat().st_mode & 0o777 == 0o600
    for group, peers in (("alpha", 1), ("beta", 2)):
        proc = as_group(group, "create", "--name", NAME, "--peers", str(peers), "-q",
                        "--label", "node-kind=real")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    yield Lab(sim_lab)
    for group in ("alpha", "beta"):
        as_group(group, "delete", NAME, "--no-export", "-q")


def test_each_groups_experiment_lives_in_its_own_namespace(lab: Lab) -> None:
    # beta's create of the same name made beta's own experiment; alpha's kept its one peer
    assert lab.statefulset(ALPHA).spec.replicas == 1
    assert lab.statefulset(BETA).spec.replicas == 2
    alpha = lab.peers(ALPHA, 1)
    assert {p.spec.node_name for p in alpha} <= REAL  # really running, on the real nodes
    listed = yaml.safe_load(as_group("alpha", "list", "-o", "yaml").stdout)
    assert [(e["experiment"], e["namespace"], e["running"]) for e in listed] == [
        (NAME, ALPHA, 1)
    ], listed
    # the group's kubeconfig carries nothing of the admin's credentials, only its token
    kubeconfig = yaml.safe_load((ARTIFACTS / "alpha.kubeconfig").read_text())
    assert set(kubeconfig["users"][0]["user"]) == {"token"}
    who = kubectl("alpha", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert who.stdout == "system:serviceaccount:nuclab-system:group-alpha", who.stderr


def test_experiment_yml_with_a_groups_kubeconfig_acts_in_its_namespace(lab: Lab) -> None:
    before = lab.state(ALPHA)
    kubeconfig = str(ARTIFACTS / "beta.kubeconfig")
    run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "peers=3",
                 "-e", f"experiment_kubeconfig={kubeconfig}")  # fmt: skip
    assert lab.statefulset(BETA).spec.replicas == 3
    assert lab.state(ALPHA) == before
    # and the playbook refuses beta's delete of alpha's experiment
    proc = run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "state=absent",
                        "-e", "export=false", "-e", f"experiment_kubeconfig={kubeconfig}",
                        "-e", f"experiment_namespace={ALPHA}", check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "forbidden" in (proc.stdout + proc.stderr).lower(), proc.stdout[-3000:]
    assert lab.state(ALPHA) == before


def test_a_group_cannot_read_or_change_another_groups_experiment(lab: Lab) -> None:
    before = lab.state(ALPHA)
    (alpha_pod,) = lab.peers(ALPHA, 1)
    pod = alpha_pod.metadata.name
    attempts = {
        "list": as_group("beta", "list", "-n", ALPHA),
        "scale": as_group("beta", "scale", NAME, "5", "-n", ALPHA, "-q"),
        "delete": as_group("beta", "delete", NAME, "--no-export", "-n", ALPHA, "-q"),
        "create in its namespace": as_group(
            "beta", "create", "--name", "evil", "--peers", "1", "-n", ALPHA, "-q"
        ),
        "exec": kubectl("beta", "exec", "-n", ALPHA, pod, "-c", "peer", "--", "true"),
        "logs": kubectl("beta", "logs", "-n", ALPHA, pod, "-c", "peer"),
        "release records": kubectl("beta", "get", "secrets", "-n", ALPHA),
        "pods": kubectl("beta", "get", "pods", "-n", ALPHA),
        "delete a pod": kubectl("beta", "delete", "pod", "-n", ALPHA, pod, "--wait=false"),
        "alpha's credential": kubectl(
            "beta", "get", "secret", "-n", "nuclab-system", "group-alpha-token"
        ),
        "relabel alpha's namespace": kubectl(
            "beta",
            "label",
            "namespace",
            ALPHA,
            "pod-security.kubernetes.io/enforce=privileged",
            "--overwrite",
        ),
        "grant itself cluster-admin": kubectl(
            "beta",
            "create",
            "rolebinding",
            "mine",
            "-n",
            BETA,
            "--clusterrole=cluster-admin",
            "--serviceaccount=nuclab-system:group-beta",
        ),
        "widen its own role": kubectl(
            "beta",
            "patch",
            "clusterrole",
            "nuclab:experimenter",
            "--type=json",
            "-p",
            '[{"op":"add","path":"/rules/0/verbs/-","value":"escalate"}]',
        ),
        "label a node": kubectl("beta", "label", "node", sorted(REAL)[0], "owned=beta"),
        "list namespaces": kubectl("beta", "get", "namespaces"),
        "a namespace of its own": kubectl("beta", "create", "namespace", "beta-extra"),
    }
    problems = []
    for what, proc in attempts.items():
        try:
            refused(proc)
        except AssertionError as exc:
            problems.append(f"{what}: {exc}")
    assert not problems, "\n".join(problems)
    # the CLI says so in one line, as bad input (exit 2), not a traceback
    listing = attempts["list"]
    assert listing.returncode == 2, listing.stderr
    assert listing.stderr.strip().count("\n") == 0 and "may not do that" in listing.stderr
    assert lab.state(ALPHA) == before
    assert [p.metadata.uid for p in lab.peers(ALPHA, 1)] == [alpha_pod.metadata.uid]


def test_a_group_cannot_reach_another_groups_peers_even_after_opening_its_own_egress(
    lab: Lab,
) -> None:
    (alpha_pod,) = lab.peers(ALPHA, 1)
    beta_pods = lab.peers(BETA, lab.statefulset(BETA).spec.replicas)
    # beta lifts its own experiment's egress limits (it may: its namespace, its policies)
    opened = kubectl("beta", "apply", "-n", BETA, "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "anything-out"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
    }))  # fmt: skip
    assert opened.returncode == 0, opened.stderr

    def connect(ip: str) -> str:
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(({ip!r}, {METRICS_PORT}), timeout=3).close()\n"
            "    print('ok')\n"
            "except OSError as e:\n"
            "    print('blocked', e)\n"
        )
        proc = kubectl("beta", "exec", "-n", BETA, beta_pods[0].metadata.name, "-c", "peer",
                       "--", "python3", "-c", code)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    try:
        # its own other peer answers: the check can tell open from blocked
        assert connect(beta_pods[1].status.pod_ip) == "ok"
        assert connect(alpha_pod.status.pod_ip).startswith("blocked")
    finally:
        kubectl("beta", "delete", "networkpolicy", "-n", BETA, "anything-out")


def pod(name: str, *, init: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A pod as restricted as the chart's peers, with ``changes`` to its spec or container."""
    container: dict[str, Any] = {
        "name": "c",
        "image": IMAGE,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    container["securityContext"].update(changes.pop("container_security", {}))
    container.update(changes.pop("container", {}))
    spec: dict[str, Any] = {
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        **changes,
    }
    if init:
        spec["initContainers"] = [init]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


# The init container the chart had before the node agent (chart 0.1.9 and older).
NETEM = {
    "name": "netem",
    "image": IMAGE,
    "securityContext": {
        "runAsUser": 0,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
    },
}
# What a refusal names: Pod Security (whose admission runs first) or the groups' policy.
REFUSED_BY = ('violates PodSecurity "restricted', "nuclab-group-pods")


def test_a_group_may_run_only_restricted_pods(lab: Lab) -> None:
    def admitted(manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return kubectl("beta", "create", "--dry-run=server", "-n", BETA, "-f", "-",
                       stdin=yaml.safe_dump(manifest))  # fmt: skip

    # what the chart makes is admitted: a restricted pod
    proc = admitted(pod("plain"))
    assert proc.returncode == 0, proc.stderr
    attacks = {
        "privileged": pod("privileged", container_security={"privileged": True,
                                                   "allowPrivilegeEscalation": True}),
        "hostPath": pod("host-path", volumes=[{"name": "root", "hostPath": {"path": "/"}}],
                        container={"volumeMounts": [{"name": "root", "mountPath": "/host"}]}),
        "hostNetwork": pod("host-network", hostNetwork=True),
        "hostPID": pod("host-pid", hostPID=True),
        "hostPort": pod("host-port", container={"ports": [{"containerPort": 80, "hostPort": 80}]}),
        "root": pod("root", container_security={"runAsUser": 0, "runAsNonRoot": False}),
        "SYS_ADMIN": pod("sys-admin", container_security={"capabilities": {"drop": ["ALL"],
                                                                   "add": ["SYS_ADMIN"]}}),
        "NET_ADMIN": pod("net-admin", container_security={
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}),
        "the old netem init container (root with NET_ADMIN)": pod("with-netem", init=NETEM),
        "unconfined seccomp": pod("unconfined",
                                  securityContext={"seccompProfile": {"type": "Unconfined"}}),
        # a sysctl restricted allows: the groups' policy alone refuses it
        "sysctl": pod("sysctl", securityContext={"seccompProfile": {"type": "RuntimeDefault"},
                                            "sysctls": [{"name": "net.ipv4.ping_group_range",
                                                         "value": "0 1"}]}),
    }  # fmt: skip
    problems = []
    for what, manifest in attacks.items():
        proc = admitted(manifest)
        if proc.returncode == 0 or not any(by in proc.stderr for by in REFUSED_BY):
            problems.append(f"{what}: exit {proc.returncode}: {proc.stdout}{proc.stderr}")
    assert not problems, "\n".join(problems)
