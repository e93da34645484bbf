"""Peer footprint: memory and CPU of ``nuclab-peer`` at the reference experiment's settings.

N peers (5) run as podman containers of the tools image on one network, each limited like
experiments/purple.yml (``--memory=16m --memory-swap=16m --cpus=0.05``), 1440-byte messages
every 2000 ms, connect-to 5, discovery through DNS (network aliases ``<sts>-<i>.<service>``).
After ``--seconds`` it reads, from the host (an exec would be charged to the container): the
cgroup's peak (memory.max_usage_in_bytes) and anonymous memory (memory.stat rss), the peer's
VmRSS and VmHWM, and its CPU (cpuacct.usage over the window). ``--cold`` runs a fresh build of
the binary, bind-mounted, with its pages dropped from the page cache first: the first container
is then charged the binary's page cache, as on a node that never ran the peer.

    .venv/bin/python bench/peer_footprint.py [--runs 3] [--seconds 60] [--cold] [--image IMAGE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "tools" / "containers.conf")}
STS, SERVICE = "nuclab-exp-purple", "nuclab-exp-purple-headless"


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, env=ENV, check=True).stdout


def cgroup(pid: int, controller: str) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    raise SystemExit(f"no cgroup v1 {controller} controller for pid {pid}")


def status_kib(pid: int, key: str) -> int:
    line = next(
        x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(key)
    )
    return int(line.split()[1])


def fresh_binary(folder: Path) -> Path:
    sh("bash", str(REPO / "tools" / "build-agents.sh"), "--out", str(folder))
    binary = folder / "nuclab-peer"
    fd = os.open(binary, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return binary


def one_run(image: str, peers: int, seconds: float, binary: Path | None) -> list[dict[str, float]]:
    net = f"nlbench{os.getpid() % 100000}"
    sh("podman", "network", "create", net)
    names = []
    try:
        for i in range(peers):
            pod = f"{STS}-{i}"
            env = {
                "NUCLAB_EXPERIMENT": "purple", "NUCLAB_PEERS": str(peers),
                "NUCLAB_STATEFULSET": STS, "NUCLAB_SERVICE": SERVICE, "NUCLAB_MSG_SIZE": "1440",
                "NUCLAB_MSG_INTERVAL_MS": "2000", "NUCLAB_CONNECT_TO": "5",
                "NUCLAB_PORT": "7000", "NUCLAB_METRICS_PORT": "9464", "NUCLAB_POD_NAME": pod,
            }  # fmt: skip
            flags = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
            entry = ["--entrypoint", "nuclab-peer"]
            if binary:
                flags += ["-v", f"{binary}:/opt/cold/nuclab-peer:ro"]
                entry = ["--entrypoint", "/opt/cold/nuclab-peer"]
            names.append(f"{net}-{i}")
            sh("podman", "run", "-d", "--name", names[-1], "--network", net,
               "--network-alias", f"{pod}.{SERVICE}", "--memory=16m", "--memory-swap=16m",
               "--cpus=0.05", *entry, *flags, image)  # fmt: skip
        pids = [int(json.loads(sh("podman", "inspect", n))[0]["State"]["Pid"]) for n in names]
        cpu0 = [int((cgroup(p, "cpuacct") / "cpuacct.usage").read_text()) for p in pids]
        t0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        out = []
        for pid, c0 in zip(pids, cpu0, strict=True):
            mem = cgroup(pid, "memory")
            stat = dict(x.split() for x in (mem / "memory.stat").read_text().splitlines())
            cpu = int((cgroup(pid, "cpuacct") / "cpuacct.usage").read_text()) - c0
            out.append({
                "peak_mib": int((mem / "memory.max_usage_in_bytes").read_text()) / 2**20,
                "anon_mib": int(stat["rss"]) / 2**20,
                "cache_mib": int(stat["cache"]) / 2**20,
                "rss_mib": status_kib(pid, "VmRSS") / 1024,
                "hwm_mib": status_kib(pid, "VmHWM") / 1024,
                "cpu_pct": 100 * cpu / 1e9 / wall,
                "oom": json.loads(sh("podman", "inspect", f"{net}-{pids.index(pid)}"))[0]["State"][
                    "OOMKilled"
                ],
            })  # fmt: skip
        return out
    finally:
        for n in names:
            subprocess.run(
                ["podman", "rm", "-f", "-t", "0", n], env=ENV, capture_output=True, check=False
            )
        subprocess.run(
            ["podman", "network", "rm", "-f", net], env=ENV, capture_output=True, check=False
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--image", default=os.environ.get("NUCLAB_TOOLS_IMAGE", "localhost/nuclab/tools:0.1.0")
    )
    ap.add_argument("--peers", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="a fresh binary, out of the page cache")
    args = ap.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            binary = fresh_binary(Path(tmp) / str(run)) if args.cold else None
            got = one_run(args.image, args.peers, args.seconds, binary)
            peak = max(got, key=lambda g: g["peak_mib"])
            print(f"run {run + 1}: " + "; ".join(
                f"peak {g['peak_mib']:.2f} anon {g['anon_mib']:.2f} cache {g['cache_mib']:.2f} "
                f"VmHWM {g['hwm_mib']:.2f} MiB, CPU {g['cpu_pct']:.2f} %, oom {g['oom']}"
                for g in got
            ))  # fmt: skip
            rows.append((peak, got))
    highest = statistics.median(r[0]["peak_mib"] for r in rows)
    print(f"median over runs of the highest peer: cgroup peak {highest:.2f} MiB")
    every = [g for _, got in rows for g in got]

    def med(key: str) -> float:
        return statistics.median(g[key] for g in every)

    print(
        f"median of every peer: cgroup peak {med('peak_mib'):.2f} MiB, anon "
        f"{med('anon_mib'):.2f} MiB, VmRSS {med('rss_mib'):.2f} MiB, VmHWM {med('hwm_mib'):.2f}"
        f" MiB, CPU {med('cpu_pct'):.2f} % of a core"
    )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
