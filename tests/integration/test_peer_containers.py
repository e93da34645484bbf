"""The reference experiment's peers at the reference limits, enforced by the real cgroup.

Five nuclab-peer containers from the real tools image on one podman network (netavark with
aardvark-dns), each limited like experiments/purple.yml: ``--memory=16m --memory-swap=16m
--cpus=0.05``, 1440-byte messages every 2000 ms, connect-to 5, 30 messages each (60 s). Each gets
exactly the experiment chart's environment and finds the others through DNS as a pod does: the
network alias ``<statefulset>-<i>.<service>`` is the per-pod name of the headless Service.
Measured from the host, never from inside (an exec would be charged to the container's cgroup):
no OOM kill or restart, every peer's /metrics has every other peer's messages, /readyz is 200,
and the cgroup's peak memory (memory.max_usage_in_bytes) stays below the limit; SIGTERM then
stops each with exit code 0.

What this cannot show: a kubelet's probes and OOM handling (the lead's real-node tests do).
The image's layers are read into the page cache at build time, so the peak here is the peer's
own memory; the binary's pages would add at most its resident file pages (VmRSS minus the
cgroup's rss, printed below) on a node that has never run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.scrape import samples

# The tools image (NUCLAB_TOOLS_IMAGE builds and uses another name, e.g. beside a lab that
# runs the standard one).
IMAGE = os.environ.get("NUCLAB_TOOLS_IMAGE", "localhost/nuclab/tools:0.1.0")
ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "tools" / "containers.conf")}
PEERS, COUNT, INTERVAL_MS, SIZE = 5, 30, 2000, 1440
LIMIT = 16 * 2**20
STS, SERVICE = "nuclab-exp-purple", "nuclab-exp-purple-headless"


def _sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, check=False)
    if check:
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def image() -> str:
    base = "localhost/nuclab/debian-systemd:bookworm"
    exists = subprocess.run(["podman", "image", "exists", base], env=ENV, check=False)
    assert exists.returncode == 0, (
        "the Debian base image is missing: run make setup (tools/images/build-debian-image.sh)"
    )
    _sh("bash", str(REPO / "tools" / "images" / "build-nuclab-image.sh"), "--name", IMAGE)
    return IMAGE


@pytest.fixture
def network() -> Iterator[tuple[str, list[str]]]:
    name = f"nlpeer{os.getpid() % 100000}"
    containers: list[str] = []
    _sh("podman", "network", "create", name)
    try:
        yield name, containers
    finally:
        for c in containers:
            _sh("podman", "rm", "-f", "-t", "0", c, check=False)
        _sh("podman", "network", "rm", "-f", name, check=False)


def _inspect(container: str) -> dict:
    return json.loads(_sh("podman", "inspect", container))[0]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def _counters(text: str) -> dict[str, float]:
    return {s.name: s.value for s in samples(text)}


def _cgroup(pid: int, controller: str) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    raise AssertionError(f"no {controller} cgroup (v1) for pid {pid}")


def test_five_peers_at_16_mib_and_5_percent_cpu_deliver_everything(
    image: str, network: tuple[str, list[str]]
) -> None:
    net, containers = network
    names = [f"{STS}-{i}" for i in range(PEERS)]
    for i, pod in enumerate(names):
        chart_env = {
            "NUCLAB_EXPERIMENT": "purple", "NUCLAB_PEERS": str(PEERS),
            "NUCLAB_STATEFULSET": STS, "NUCLAB_SERVICE": SERVICE, "NUCLAB_MSG_SIZE": str(SIZE),
            "NUCLAB_MSG_INTERVAL_MS": str(INTERVAL_MS), "NUCLAB_CONNECT_TO": "5",
            "NUCLAB_PORT": "7000", "NUCLAB_METRICS_PORT": "9464", "NUCLAB_POD_NAME": pod,
        }  # fmt: skip
        flags = [a for k, v in chart_env.items() for a in ("-e", f"{k}={v}")]
        cid = _sh(
            "podman", "run", "-d", "--name", f"{net}-{i}", "--network", net,
            "--network-alias", f"{pod}.{SERVICE}", "--memory=16m", "--memory-swap=16m",
            "--cpus=0.05", "--entrypoint", "nuclab-peer", *flags, image, "--count", str(COUNT),
        ).strip()  # fmt: skip
        containers.append(cid)
    info = [_inspect(c) for c in containers]
    ips = [i["NetworkSettings"]["Networks"][net]["IPAddress"] for i in info]
    pids = [int(i["State"]["Pid"]) for i in info]
    memcg = [_cgroup(pid, "memory") for pid in pids]
    cpucg = [_cgroup(pid, "cpuacct") for pid in pids]
    for cg in memcg:
        assert int((cg / "memory.limit_in_bytes").read_text()) == LIMIT
    cpu0 = [int((cg / "cpuacct.usage").read_text()) for cg in cpucg]
    t0 = time.monotonic()

    want_received = (PEERS - 1) * COUNT
    deadline = t0 + COUNT * INTERVAL_MS / 1000 + 40
    while True:
        # A peer that is not listening yet (at 0.05 CPU its start can take seconds) has no
        # counters yet: it is polled again until the deadline, then the asserts below name it.
        answers = [_get(f"http://{ip}:9464/metrics") for ip in ips]
        got = [_counters(body) if status == 200 else {} for status, body in answers]
        done = all(
            g.get("nuclab_peer_messages_sent_total") == COUNT
            and g.get("nuclab_peer_messages_received_total") == want_received
            for g in got
        )
        if done or time.monotonic() > deadline:
            break
        time.sleep(2)
    elapsed = time.monotonic() - t0
    cpu = [
        (int((cg / "cpuacct.usage").read_text()) - c0) / 1e9
        for cg, c0 in zip(cpucg, cpu0, strict=True)
    ]
    peaks = [int((cg / "memory.max_usage_in_bytes").read_text()) for cg in memcg]
    rss = [int((cg / "memory.stat").read_text().split("\nrss ")[1].split()[0]) for cg in memcg]
    hwm = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        hwm.append(int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1]))
    print(
        f"\n{PEERS} peers, {elapsed:.0f} s: cgroup peak MiB {[round(p / 2**20, 2) for p in peaks]}"
        f", VmHWM MiB {[round(h / 1024, 2) for h in hwm]}, cgroup rss MiB "
        f"{[round(r / 2**20, 2) for r in rss]}, CPU % of a core "
        f"{[round(100 * c / elapsed, 2) for c in cpu]}"
    )

    for name, g in zip(names, got, strict=True):
        assert g.get("nuclab_peer_messages_sent_total") == COUNT, (name, g)
        assert g.get("nuclab_peer_messages_received_total") == want_received, (name, g)
        assert g.get("nuclab_peer_connections", 0) >= PEERS - 1, (name, g)
    for c, ip, name in zip(containers, ips, names, strict=True):
        state = _inspect(c)["State"]
        assert state["Running"] and not state["OOMKilled"], (name, state)
        assert _inspect(c)["RestartCount"] == 0
        assert _get(f"http://{ip}:9464/readyz") == (200, "ok\n"), name
        assert _get(f"http://{ip}:9464/healthz") == (200, "ok\n"), name
        logs = _sh("podman", "logs", c)
        assert sum(line.startswith("sending at ") for line in logs.splitlines()) == COUNT
    for name, peak in zip(names, peaks, strict=True):
        assert peak < LIMIT, (name, peak)
    # SIGTERM (podman stop, as a kubelet stops a pod) ends every peer cleanly well within the
    # chart's 5 s grace period: exit code 0, not a SIGKILL's 137.
    t_stop = time.monotonic()
    _sh("podman", "stop", "-t", "5", *containers)
    assert time.monotonic() - t_stop < 5
    for c, name in zip(containers, names, strict=True):
        state = _inspect(c)["State"]
        assert state["ExitCode"] == 0 and not state["OOMKilled"], (name, state)
