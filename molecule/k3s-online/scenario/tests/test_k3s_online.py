"""A real K3s cluster from the online installer: both nodes Ready (needs internet; not in CI)."""

from __future__ import annotations

import testinfra

testinfra_hosts = ["ansible://k3so-server"]


def test_every_node_is_ready(host) -> None:
    server = testinfra.get_host("podman://k3so-server")
    out = server.check_output(
        "k3s kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}="
        '{.status.conditions[?(@.type=="Ready")].status} {end}\''
    )
    assert sorted(out.split()) == ["k3so-agent=True", "k3so-server=True"]


def test_version_is_the_pinned_one(host) -> None:
    server = testinfra.get_host("podman://k3so-server")
    assert "test double" not in server.check_output("k3s --version")
