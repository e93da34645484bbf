"""Reading a Prometheus /metrics page in the integration tests, from here or from inside a network
namespace, with the parser the product uses (prometheus_client)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

# Run by the test's Python inside a network namespace (`ip netns exec NS python -c GET URL`).
GET = (
    "import sys, urllib.request; "
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
)


def get(url: str, timeout: float = 5) -> str:
    """The page at ``url`` (raises ``OSError`` when it does not answer 2xx)."""
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.read().decode()


def get_in_netns(ns: str, url: str, wait: float = 10) -> str:
    """The page at ``url`` as seen from network namespace ``ns``, retried for ``wait`` seconds
    while the process that serves it starts."""
    deadline = time.monotonic() + wait
    while True:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", GET, url],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert done.returncode == 0, f"cannot read {url} in {ns}: {done.stderr.strip()[-300:]}"
    return done.stdout


def samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def scrape(url: str) -> list[Sample]:
    """Every sample the endpoint at ``url`` serves."""
    return samples(get(url))


def total(found: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(
        s.value
        for s in found
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
