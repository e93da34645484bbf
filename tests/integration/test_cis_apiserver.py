"""The K3s roles' CIS hardening of the API server, run by a real kube-apiserver.

K3s itself cannot run here (its binary cannot be had), so the Molecule scenarios show only that
the roles write the hardening into K3s' config and files. Here the same files, rendered by
Ansible from the roles' own templates and variables (k3s_common's psa.yaml.j2 and audit.yaml.j2,
the k3s_server defaults, the kube-apiserver-arg list of k3s_common's vars), are given to the
kube-apiserver the simulated lab runs (the Kubernetes version K3s embeds), with its own etcd:

- the admission configuration is accepted with NodeRestriction and EventRateLimit on;
- Pod Security enforces `restricted` in a namespace without labels and in one carrying nuclab's
  experiment labels (no experiment pod needs more: the node agent applies the network
  emulation), not in the exempt ones;
- the research groups' ValidatingAdmissionPolicy (nuclab.groups.pod_policy) type-checks, admits
  the chart's pods and refuses what `restricted` refuses even where Pod Security does not hold
  (a group namespace labelled privileged): NET_ADMIN (the old netem init container), root,
  privileged, host namespaces and paths, unconfined AppArmor, SELinux options, sysctls;
- EventRateLimit refuses a namespace's events beyond the burst;
- the audit log records requests at Metadata level, never their bodies.

Not shown here: secrets encryption (K3s writes its own encryption configuration) and the
kubelet's settings (its TLS ciphers and protect-kernel-defaults), which need K3s' kubelet.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from nuclab import groups, spec
from nuclab.deploy import NAMESPACE_LABELS
from nuclab.net import free_port
from tests.chart.conftest import helm_template
from tests.conftest import REPO, tool
from tests.harness.prometheus import Server
from tests.integration.conftest import ansible_env

RENDER = """---
- name: Render the API server's hardening as the K3s server role writes it
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {repo}/roles/k3s_common/vars/main.yml
    - {repo}/roles/k3s_server/defaults/main.yml
  vars:
    k3s_common_psa_enforce: "{{{{ k3s_server_psa_enforce }}}}"
    k3s_common_psa_exempt_namespaces: "{{{{ k3s_server_psa_exempt_namespaces }}}}"
    k3s_common_event_rate_limit: "{{{{ k3s_server_event_rate_limit }}}}"
  tasks:
    - name: Write the admission configuration and the audit policy
      ansible.builtin.template:
        src: "{repo}/roles/k3s_common/templates/{{{{ item }}}}.j2"
        dest: "{{{{ _k3s_common_server_dir }}}}/{{{{ item }}}}"
        mode: "0600"
      loop: [psa.yaml, audit.yaml]
    - name: Write the API server's arguments
      ansible.builtin.copy:
        content: "{{{{ _k3s_common_cis.server['kube-apiserver-arg'] | to_json }}}}"
        dest: "{{{{ _k3s_common_server_dir }}}}/args.json"
        mode: "0600"
"""
TOKEN = "nuclab-cis-test-token-not-a-secret"


def _render(server_dir: Path) -> list[str]:
    play = server_dir / "render.yml"
    play.write_text(RENDER.format(repo=REPO))
    (server_dir / "logs").mkdir(mode=0o700)
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(play),
            "-e", f"_k3s_common_server_dir={server_dir}",
            "-e", f"ansible_python_interpreter={sys.executable}"]  # fmt: skip
    done = subprocess.run(argv, env=ansible_env(), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return json.loads((server_dir / "args.json").read_text())


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[client.CoreV1Api, Path]]:
    root = tmp_path_factory.mktemp("cis")
    server_dir = root / "server"
    server_dir.mkdir(mode=0o700)
    args = _render(server_dir)
    servers: list[Server] = []
    try:
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        servers.append(Server(
            [tool("etcd"), "--name=cis", f"--data-dir={root / 'etcd'}",
             f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
             f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
             f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
             f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
             f"--initial-cluster=cis=http://127.0.0.1:{peer_port}",
             "--unsafe-no-fsync=true", "--log-level=warn"],
            etcd_port, "/health", root / "etcd.log", 90,
        ))  # fmt: skip
        key = root / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True,
                       capture_output=True)  # fmt: skip
        (root / "tokens.csv").write_text(f'{TOKEN},admin,admin,"system:masters"\n')
        auth = {"Authorization": f"Bearer {TOKEN}"}
        servers.append(Server(
            [tool("kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
             "--bind-address=127.0.0.1", f"--secure-port={api_port}",
             f"--cert-dir={root / 'certs'}", f"--token-auth-file={root / 'tokens.csv'}",
             "--service-account-issuer=https://kubernetes.default.svc",
             f"--service-account-key-file={key}", f"--service-account-signing-key-file={key}",
             "--service-cluster-ip-range=10.43.0.0/16", "--authorization-mode=Node,RBAC",
             "--allow-privileged=true", "--endpoint-reconciler-type=none",
             *(f"--{arg}" for arg in args)],
            api_port, "/readyz", root / "kube-apiserver.log", 90, tls=True, headers=auth,
        ))  # fmt: skip
        configuration = client.Configuration(host=servers[-1].url)
        # the serving certificate kube-apiserver made itself (--cert-dir), for 127.0.0.1
        configuration.ssl_ca_cert = str(root / "certs" / "apiserver.crt")
        configuration.api_key = {"authorization": f"Bearer {TOKEN}"}
        yield client.CoreV1Api(client.ApiClient(configuration)), server_dir
    finally:
        for server in reversed(servers):
            server.stop()


def _namespace(core: client.CoreV1Api, name: str, labels: dict[str, str] | None = None) -> None:
    """The namespace and its default ServiceAccount (no controller-manager runs here)."""
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    account = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
    for create in (lambda: core.create_namespace(body),
                   lambda: core.create_namespaced_service_account(name, account)):  # fmt: skip
        try:
            create()
        except ApiException as exc:
            if exc.status != 409:
                raise


def _pod(name: str, *, privileged: bool) -> dict[str, Any]:
    if privileged:
        security: dict[str, Any] = {"privileged": True}
        pod_security: dict[str, Any] = {}
    else:
        security = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        pod_security = {"runAsNonRoot": True, "runAsUser": 65534,
                        "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "securityContext": pod_security,
            "containers": [
                {"name": "c", "image": "localhost/nuclab/pause:3.10", "securityContext": security}
            ],
        },
    }


def _create(core: client.CoreV1Api, namespace: str, pod: dict[str, Any]) -> str:
    """'' when the API server admitted the pod, else its refusal."""
    try:
        core.create_namespaced_pod(namespace, pod)
    except ApiException as exc:
        return f"{exc.status} {json.loads(exc.body).get('message', '')}"
    return ""


def test_pod_security_is_restricted_where_no_namespace_label_says_otherwise(hardened) -> None:  # type: ignore[no-untyped-def]
    core, _ = hardened
    _namespace(core, "plain")
    refused = _create(core, "plain", _pod("privileged", privileged=True))
    assert refused.startswith("403 ") and 'violates PodSecurity "restricted:latest"' in refused
    assert _create(core, "plain", _pod("restricted", privileged=False)) == ""
    # the exempt namespaces (K3s' own, the lab's monitoring and Kafka) still run what they need
    for namespace in ("kube-system", "monitoring", "kafka"):
        _namespace(core, namespace)
        assert _create(core, namespace, _pod("privileged", privileged=True)) == "", namespace
    # nuclab's experiment namespaces enforce restricted with their own labels
    _namespace(core, "nuclab", NAMESPACE_LABELS)
    refused = _create(core, "nuclab", _pod("privileged", privileged=True))
    assert refused.startswith("403 ") and 'violates PodSecurity "restricted:latest"' in refused
    assert _create(core, "nuclab", _pod("restricted", privileged=False)) == ""


def _chart_pods(tmp_path: Path) -> list[dict[str, Any]]:
    """Every pod the chart makes with peers, probe sidecar and load generator, as pods."""
    values = spec.to_values(
        spec.parse({"name": "purple", "latency": 20, "loss": 1, "probe": True,
                    "loadgen": {"enabled": True, "mode": "http"}})
    )  # fmt: skip
    proc = helm_template(values, tmp_path)
    assert proc.returncode == 0, proc.stderr
    pods = []
    for obj in yaml.safe_load_all(proc.stdout):
        if obj and obj["kind"] in ("StatefulSet", "Job", "Pod"):
            pod = obj if obj["kind"] == "Pod" else obj["spec"]["template"]
            pod_spec = {**pod["spec"]}
            pod_spec.pop("serviceAccountName", None)  # the namespace's default one is here
            name = f"{obj['kind'].lower()}-{len(pods)}"
            pods.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": name, "annotations": pod["metadata"].get(
                             "annotations", {})},
                         "spec": pod_spec})  # fmt: skip
    assert len(pods) == 3
    return pods


def _escapes() -> dict[str, dict[str, Any]]:
    """Pods that `restricted` refuses, each one way out of a restricted pod."""
    ok = _pod("ok", privileged=False)
    container = ok["spec"]["containers"][0]

    def changed(name: str, *, pod: dict[str, Any] | None = None,
                security: dict[str, Any] | None = None,
                annotations: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
        escape = {
            **container,
            "securityContext": {**container["securityContext"], **(security or {})},
        }
        return {**ok, "metadata": {"name": name, "annotations": annotations or {}},
                "spec": {**ok["spec"], **(pod or {}), "containers": [escape]}}  # fmt: skip

    netem = {
        "name": "netem", "image": "localhost/nuclab/tools:0.1.0",
        "command": ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "20ms"],
        "securityContext": {"runAsUser": 0, "runAsNonRoot": False,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}},
    }  # fmt: skip
    return {
        "the old netem init container (root with NET_ADMIN)": changed(
            "netem", pod={"initContainers": [netem]}),
        "NET_ADMIN": changed("net-admin", security={
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}),
        "root": changed("root", security={"runAsNonRoot": False, "runAsUser": 0}),
        "privileged": changed("privileged", security={"privileged": True,
                                                       "allowPrivilegeEscalation": True}),
        "hostNetwork": changed("host-network", pod={"hostNetwork": True}),
        "hostPath": changed("host-path", pod={
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
        "AppArmor unconfined": changed("apparmor", security={
            "appArmorProfile": {"type": "Unconfined"}}),
        "SELinux user": changed("selinux", security={"seLinuxOptions": {"user": "system_u"}}),
        "unsafe sysctl": changed("sysctl", pod={"securityContext": {
            **ok["spec"]["securityContext"],
            "sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}]}}),
    }  # fmt: skip


def test_the_groups_pod_policy_admits_the_chart_and_holds_restricted_without_pod_security(
    hardened, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    core, _ = hardened
    admission = client.AdmissionregistrationV1Api(core.api_client)
    policy, binding = groups.pod_policy()
    admission.create_validating_admission_policy(policy)
    admission.create_validating_admission_policy_binding(binding)
    # a group's namespace as nuclab makes it (restricted), and one an admin relabelled privileged
    # (Pod Security off): the policy alone must hold there
    _namespace(core, "group-a", {**NAMESPACE_LABELS, groups.GROUP_LABEL: "a"})
    relabelled = {**NAMESPACE_LABELS, groups.GROUP_LABEL: "b",
                  "pod-security.kubernetes.io/enforce": "privileged"}  # fmt: skip
    _namespace(core, "group-b", relabelled)
    escapes = _escapes()
    probe = escapes["NET_ADMIN"]
    deadline = time.monotonic() + 60
    while (
        _create(core, "group-b", {**probe, "metadata": {"name": f"p{int(time.monotonic())}"}}) == ""
    ):
        assert time.monotonic() < deadline, "the policy never took effect"
        time.sleep(1)
    status = admission.read_validating_admission_policy(groups.POD_POLICY).status
    assert not (status.type_checking and status.type_checking.expression_warnings), status
    for namespace in ("group-a", "group-b"):
        assert _create(core, namespace, _pod("restricted", privileged=False)) == "", namespace
        for pod in _chart_pods(tmp_path):
            assert _create(core, namespace, pod) == "", (namespace, pod["metadata"]["name"])
    for what, pod in escapes.items():
        # the policy answers 422 Invalid, Pod Security 403 Forbidden
        refused = _create(core, "group-b", pod)
        assert refused.startswith("422 ") and groups.POD_POLICY in refused, (what, refused)
        assert _create(core, "group-a", pod) != "", what


def test_event_rate_limit_refuses_a_namespaces_events_beyond_the_burst(hardened) -> None:  # type: ignore[no-untyped-def]
    core, _ = hardened
    _namespace(core, "chatty")

    def send(i: int) -> bool:
        """True when the API server admitted the event, False on 429 Too Many Requests."""
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"e{i}"),
            involved_object=client.V1ObjectReference(kind="Pod", name="p", namespace="chatty"),
            reason="Test",
            message="event rate limit",
        )
        try:
            core.create_namespaced_event("chatty", event)
        except ApiException as exc:
            assert exc.status == 429, exc.body
            return False
        return True

    # More than the burst (400), from 8 threads so as to outrun the refill (100/s) even on a
    # loaded machine, in rounds of 100 until refusals come (at most 4000 events).
    admitted = refused = sent = 0
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        while sent < 4000 and (sent < 600 or refused == 0):
            results = list(pool.map(send, range(sent, sent + 100)))
            sent += len(results)
            admitted += sum(results)
            refused += len(results) - sum(results)
    took = time.monotonic() - started
    print(f"EventRateLimit: {admitted} of {sent} events admitted in {took:.1f} s")
    assert refused > 0
    # the burst, and what refilled meanwhile (the role's 100 events/s)
    assert 400 <= admitted <= 400 + 100 * took + 5, (admitted, took)


def test_the_audit_log_records_requests_at_metadata_level_without_bodies(hardened) -> None:  # type: ignore[no-untyped-def]
    core, server_dir = hardened
    _namespace(core, "audited")
    core.create_namespaced_config_map(
        "audited", {"metadata": {"name": "secretish"}, "data": {"password": "hunter2"}}
    )
    log = server_dir / "logs" / "audit.log"
    deadline = time.monotonic() + 30
    while True:  # the audit backend writes in batches
        events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        created = [e for e in events if e["verb"] == "create"
                   and e["objectRef"].get("name") == "secretish"]  # fmt: skip
        if created or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert created, f"no audit event for the ConfigMap in {log}"
    assert {e["level"] for e in events} == {"Metadata"}
    assert created[0]["user"]["username"] == "admin"
    assert "hunter2" not in log.read_text()
