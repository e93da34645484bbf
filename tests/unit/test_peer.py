"""nuclab-peer, the experiments' default workload (Go, src/agents): its Go tests (framing, dedup,
history, config errors, discovery, gossip over loopback) and the built binary as a user runs it:
bad input, /readyz and /healthz, gossip between two processes, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO


def test_the_go_tests_pass() -> None:
    done = subprocess.run(
        ["go", "test", "./..."],
        cwd=REPO / "src" / "agents",
        capture_output=True,
        text=True,
        env={**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"},
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    passed = re.findall(r"^ok\s+(\S+)", done.stdout, re.M)
    assert set(passed) >= {
        "nuclab.io/agents/internal/discovery",
        "nuclab.io/agents/internal/memlimit",
        "nuclab.io/agents/internal/peer",
    }, done.stdout


@pytest.mark.parametrize(
    ("argv", "env", "field", "value"),
    [
        ([], {}, "--peer/--service", ""),
        (["--service", "s"], {"NUCLAB_MSG_SIZE": "-1"}, "NUCLAB_MSG_SIZE", "-1"),
        (["--service", "s"], {"NUCLAB_MSG_INTERVAL_MS": "fast"}, "NUCLAB_MSG_INTERVAL_MS", "fast"),
        (["--service", "s", "--msg-size", str(32 * 2**20)], {}, "--msg-size", str(32 * 2**20)),
        (["--peer", "x=h:0"], {}, "--peer", "x=h:0"),
        (["--service", "s"], {"NUCLAB_PORT": "99999"}, "NUCLAB_PORT", "99999"),
        (["--service", "s", "--no-such-flag"], {}, "--no-such-flag", ""),
    ],
)
def test_bad_input_is_one_line_naming_the_field_and_exit_2(
    peer_binary: str, argv: list[str], env: dict[str, str], field: str, value: str
) -> None:
    done = subprocess.run(
        [peer_binary, *argv],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 2, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and done.stdout == "", done
    assert lines[0].startswith(f"nuclab-peer: error: {field}: '{value}' is not allowed; "), lines
    assert "goroutine" not in done.stderr


def test_help_lists_the_flags_and_their_variables(peer_binary: str) -> None:
    done = subprocess.run([peer_binary, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    for word in ("--connect-to", "NUCLAB_MSG_INTERVAL_MS", "NUCLAB_SERVICE", "--peer NAME=HOST"):
        assert word in done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _wait_for(url: str, status: int, seconds: float = 15) -> str:
    deadline = time.monotonic() + seconds
    while True:
        try:
            got, body = _get(url)
        except OSError:
            got, body = 0, ""
        if got == status:
            return body
        assert time.monotonic() < deadline, f"{url}: {got} {body!r}, want {status}"
        time.sleep(0.1)


def _samples(text: str) -> dict[str, float]:
    return {
        s.name: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if not s.labels.get("le")
    }


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_two_peers_gossip_become_ready_and_stop_on_sigterm(
    peer_binary: str, procs: list[subprocess.Popen[str]]
) -> None:
    ports = {n: (_free_port(), _free_port()) for n in ("a", "b")}
    peers = [a for n, (p, _) in ports.items() for a in ("--peer", f"{n}=127.0.0.1:{p}")]
    for name, (port, metrics) in ports.items():
        env = {"NUCLAB_POD_NAME": name, "NUCLAB_EXPERIMENT": "unit", "NUCLAB_PORT": str(port),
               "NUCLAB_METRICS_PORT": str(metrics), "NUCLAB_MSG_SIZE": "1440",
               "NUCLAB_MSG_INTERVAL_MS": "100", "NUCLAB_PARAM_TOPIC": "blocks"}  # fmt: skip
        procs.append(
            subprocess.Popen(
                [peer_binary, "--bind", "127.0.0.1", *peers],
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    for _, metrics in ports.values():
        assert _wait_for(f"http://127.0.0.1:{metrics}/readyz", 200) == "ok\n"
        assert _get(f"http://127.0.0.1:{metrics}/healthz") == (200, "ok\n")
    deadline = time.monotonic() + 15
    while True:
        got = [_samples(_get(f"http://127.0.0.1:{m}/metrics")[1]) for _, m in ports.values()]
        if all(s["nuclab_peer_messages_received_total"] >= 5 for s in got):
            break
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
    text = _get(f"http://127.0.0.1:{ports['a'][1]}/metrics")[1]
    assert 'nuclab_peer_messages_sent_total{experiment="unit",peer="a"}' in text
    assert "_created" not in text and "go_goroutines" not in text and "process_" not in text
    buckets = re.findall(r'nuclab_peer_delivery_latency_seconds_bucket\{.*le="([^"]+)"', text)
    assert buckets[:3] == ["0.0005", "0.001", "0.0025"] and buckets[-2:] == ["10", "+Inf"]
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        out, err = p.communicate(timeout=10)
        assert p.returncode == 0, err
        sending = [line for line in out.splitlines() if line.startswith("sending at ")]
        assert len(sending) >= 5 and len(sending) == len(out.splitlines())
        assert re.fullmatch(
            r"sending at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z seq=1 size=1440", sending[0]
        )
        assert "experiment parameters: map[topic:blocks]" in err


def test_not_ready_until_it_reaches_a_neighbour(
    peer_binary: str, procs: list[subprocess.Popen[str]]
) -> None:
    port, metrics, nobody = _free_port(), _free_port(), _free_port()
    procs.append(
        subprocess.Popen(
            [
                peer_binary,
                "--name",
                "a",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--metrics-port",
                str(metrics),
                "--peer",
                f"b=127.0.0.1:{nobody}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    body = _wait_for(f"http://127.0.0.1:{metrics}/readyz", 503)
    assert "no connection to any of 1 other peer(s)" in body
    assert _get(f"http://127.0.0.1:{metrics}/healthz") == (200, "ok\n")
    # The neighbour comes up: a dials it again within a second and is ready.
    procs.append(
        subprocess.Popen(
            [
                peer_binary,
                "--name",
                "b",
                "--bind",
                "127.0.0.1",
                "--port",
                str(nobody),
                "--metrics-port",
                "0",
                "--peer",
                f"a=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    _wait_for(f"http://127.0.0.1:{metrics}/readyz", 200)
