"""The nuclab tools image: built with podman from the local Debian base (no registry, no network
during the build), then the probe and the peer (nuclab-peer, Go) run in containers, each in its
own network namespace joined by veth (``podman run --network ns:/run/netns/...``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nuclab.images import read_archive
from tests.conftest import REPO
from tests.integration.conftest import ansible_env
from tests.integration.scrape import get_in_netns

# NUCLAB_TOOLS_IMAGE: build and test the image under another name (beside a lab that runs the
# standard one).
IMAGE = os.environ.get("NUCLAB_TOOLS_IMAGE", "localhost/nuclab/tools:0.1.0")
ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "tools" / "containers.conf")}


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, check=False)
    if check:
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()[-2000:]}"
    return done


@pytest.fixture(scope="module")
def image() -> str:
    base = _sh("podman", "image", "exists", "localhost/nuclab/debian-systemd:bookworm", check=False)
    assert base.returncode == 0, (
        "the Debian base image is missing: run make setup (tools/images/build-debian-image.sh)"
    )
    _sh("bash", str(REPO / "tools" / "images" / "build-nuclab-image.sh"), "--name", IMAGE)
    return IMAGE


@pytest.fixture
def netns() -> Iterator[dict[str, str]]:
    """Three namespaces on a bridge: c0 10.231.9.1, c1 .2, c2 .3 (removed after the test)."""
    prefix = f"nli{os.getpid() % 100000}"
    names = {f"c{i}": f"{prefix}c{i}" for i in range(3)}
    sw = f"{prefix}sw"
    containers: list[str] = []
    try:
        _sh("ip", "netns", "add", sw)
        _sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", sw, "link", "set", "br0", "up")
        for i, (short, ns) in enumerate(names.items()):
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            a, b = f"{prefix}{short}", f"{prefix}{short}p"
            _sh("ip", "link", "add", a, "netns", ns, "type", "veth", "peer", "name", b, "netns", sw)
            _sh("ip", "-n", ns, "addr", "add", f"10.231.9.{i + 1}/24", "dev", a)
            _sh("ip", "-n", ns, "link", "set", a, "up")
            _sh("ip", "-n", sw, "link", "set", b, "master", "br0", "up")
        names["_containers"] = containers  # type: ignore[assignment]
        yield names
    finally:
        for cid in containers:
            _sh("podman", "rm", "-f", "-t", "0", cid, check=False)
        for ns in [*names.values(), sw]:
            if isinstance(ns, str):
                _sh("ip", "netns", "del", ns, check=False)


def _run(
    netns: dict, short: str, *argv: str, env: dict[str, str] | None = None, light: bool = False
) -> str:
    """Start a container in namespace ``short``; ``light``: ``python3 -m nuclab.probe``, the
    sidecar's and DaemonSet's entry point, instead of the ``nuclab`` CLI; ``peer``:
    ``nuclab-peer``, the experiment chart's default command."""
    flags = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
    if light:
        flags += ["--entrypoint", "python3"]
        argv = ("-m", "nuclab.probe", *argv[1:])
    elif argv[0] == "peer":
        flags += ["--entrypoint", "nuclab-peer"]
        argv = argv[1:]
    cid = _sh(
        "podman", "run", "-d", "--network", f"ns:/run/netns/{netns[short]}", *flags, IMAGE, *argv
    ).stdout.strip()
    netns["_containers"].append(cid)
    return cid


def test_image_runs_as_an_unprivileged_user_and_knows_its_commit(image: str) -> None:
    out = _sh("podman", "run", "--rm", "--network=none", "--entrypoint", "sh", image, "-c",
              "id -u; echo $NUCLAB_COMMIT; nuclab --version").stdout.split()  # fmt: skip
    assert out[0] == "65534"
    assert out[1] and out[-1] == "0.1.0"


def test_the_saved_archive_holds_the_image_and_an_unchanged_image_is_not_saved_again(
    image: str, tmp_path: Path
) -> None:
    # What site.yml's nuclab_image role runs on the controller; every bare-metal node's K3s
    # imports the archive (the simulated lab's real nodes import podman's archives the same
    # way, with ctr: roles/sim_cluster).
    archive = tmp_path / "images" / "nuclab-tools.tar"
    script = str(REPO / "tools" / "images" / "build-nuclab-image.sh")
    first = _sh("bash", script, "--name", image, "--save", str(archive))
    assert f"saved {image} to {archive}" in first.stdout
    inspect = json.loads(_sh("podman", "image", "inspect", image).stdout)[0]
    held = read_archive(archive)
    assert held.architecture == inspect["Architecture"] == "amd64"
    assert held.tags == (image,)
    assert held.labels["io.nuclab.image-key"] == inspect["Labels"]["io.nuclab.image-key"]
    written = archive.stat().st_mtime_ns
    second = _sh("bash", script, "--name", image, "--save", str(archive))
    assert f"{archive} is up to date" in second.stdout
    assert archive.stat().st_mtime_ns == written


def test_the_controller_role_builds_the_archive_once_then_changes_nothing(
    image: str, tmp_path: Path
) -> None:  # image: the image is built before (the role then only saves it)
    # The nuclab_image role as site.yml runs it on a bare-metal lab's controller: the first run
    # writes the archive (changed), the second finds image and archive up to date (changed=0).
    archive = tmp_path / "artifacts" / "images" / "nuclab-tools.tar"
    play = tmp_path / "controller.yml"
    play.write_text("- hosts: localhost\n  gather_facts: false\n  roles: [{role: nuclab_image}]\n")
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
            "-c", "local", str(play), "-e", f"lab_nuclab_image_archive={archive}",
            "-e", f"ansible_python_interpreter={sys.executable}"]  # fmt: skip
    recaps = []
    for _ in range(2):
        done = subprocess.run(
            argv,
            cwd=REPO,
            env={**ansible_env(), **ENV},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        recaps.append(re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", done.stdout))
    assert [int(m.group(1)) for m in recaps if m] == [1, 0]
    # The role builds the lab's image name (build-nuclab-image.sh's default).
    assert [t.split(":")[0] for t in read_archive(archive).tags] == ["localhost/nuclab/tools"]


def test_probe_in_containers_measures_the_other_container(image: str, netns: dict) -> None:
    _run(netns, "c0", "probe", "--name", "c0", "--answer-only", "--metrics-port", "0", light=True)
    cid = _run(
        netns, "c1", "probe", "--target", "c0=10.231.9.1", "--interval", "0.05", "--duration", "4",
        env={"POD_NAME": "c1", "NUCLAB_EXPERIMENT": "img"},
    )  # fmt: skip
    assert _sh("podman", "wait", cid).stdout.strip() == "0"
    logs = _sh("podman", "logs", cid).stdout
    (row,) = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert row["source"] == "c1" and row["target"] == "c0"
    assert row["answered"] >= 20 and row["lost"] == 0
    assert 0 < row["rtt_avg_s"] < 0.05


def test_peers_in_containers_gossip_every_message(image: str, netns: dict) -> None:
    peers = ["--peer", "p0=10.231.9.1", "--peer", "p1=10.231.9.2", "--peer", "p2=10.231.9.3"]
    chart_env = {"NUCLAB_EXPERIMENT": "img", "NUCLAB_CONNECT_TO": "1", "NUCLAB_MSG_SIZE": "256",
                 "NUCLAB_MSG_RATE": "100"}  # fmt: skip
    for i in range(3):
        _run(netns, f"c{i}", "peer", *peers, "--count", "10", "--duration", "60",
             env={**chart_env, "POD_NAME": f"p{i}"})  # fmt: skip
    deadline = time.monotonic() + 40
    while True:
        received = []
        for i in range(3):
            text = get_in_netns(netns[f"c{i}"], f"http://10.231.9.{i + 1}:9401/metrics", wait=30)
            line = next(
                x for x in text.splitlines() if x.startswith("nuclab_peer_messages_received_total")
            )
            received.append(float(line.split()[-1]))
        if received == [20.0] * 3 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert received == [20.0] * 3
    logs = _sh("podman", "logs", netns["_containers"][0]).stdout
    assert sum(line.startswith("sending at ") for line in logs.splitlines()) == 10


def test_loadgen_http_in_a_container_loads_a_real_server(
    image: str, netns: dict, tmp_path: Path
) -> None:
    """`nuclab loadgen http` from the image against Python's http.server in another container
    (the image's own python3), 40 requests/s for 3 s; its results file says what was achieved."""
    server = _sh(
        "podman", "run", "-d", "--network", f"ns:/run/netns/{netns['c0']}",
        "--entrypoint", "python3", image,
        "-m", "http.server", "8080", "--bind", "10.231.9.1", "--directory", "/opt/nuclab",
    ).stdout.strip()  # fmt: skip
    netns["_containers"].append(server)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the image runs as nobody
    url = "http://10.231.9.1:8080/"
    get_in_netns(netns["c1"], url, wait=30)  # http.server answers
    done = _sh(
        "podman", "run", "--rm", "--network", f"ns:/run/netns/{netns['c1']}",
        "-v", f"{out}:/out:Z", image,
        "loadgen", "http", "--url", url, "--rate", "40", "--duration", "3s",
        "--results", "/out/http.json", "--experiment", "img",
    )  # fmt: skip
    assert "http: achieved" in done.stdout
    result = json.loads((out / "http.json").read_text())
    assert result["mode"] == "http" and result["held"] is True
    assert (result["sent"], result["completed"], result["errors"]) == (120, 120, 0)
    assert result["extra"]["statuses"] == {"200": 120}
    assert abs(result["achieved_rate"] / 40 - 1) <= 0.02
    assert 0 < result["latency_s"]["p50"] < 1
