"""What ``nuclab compare`` says differs between two runs, from their manifests."""

from __future__ import annotations

import copy
from typing import Any

from nuclab.report.compare import differences, lab_of


def manifest() -> dict[str, Any]:
    """The parts of a manifest ``nuclab export`` writes (nuclab.export.run._manifest) that
    describe the run and its lab."""
    node = {
        "name": "nuc-2",
        "labels": {"nuclab.io/role": "worker", "topology.kubernetes.io/zone": "zone-a"},
        "capacity": {"cpu": "4"},
        "kubelet_version": "v1.35.4+k3s1",
        "kernel": "6.8.0-45-generic",
        "architecture": "amd64",
    }
    zone_b = {**node["labels"], "topology.kubernetes.io/zone": "zone-b"}
    return {
        "spec": {"peers": 5, "msg_size": 1440},
        "chart": {"name": "experiment", "version": "0.1.8", "appVersion": "0.1.0"},
        "k3s_versions": ["v1.35.4+k3s1"],
        "nodes": [node, {**node, "name": "nuc-4", "labels": zone_b}],
        "images": [{"image": "tools:0.1.0", "digest": "sha256:aa"}],
    }


def test_the_same_run_on_the_same_lab_differs_in_nothing() -> None:
    assert differences(manifest(), manifest()) == []


def test_each_difference_is_one_line_naming_it_with_both_values() -> None:
    other = copy.deepcopy(manifest())
    other["spec"]["peers"] = 3
    other["chart"]["version"] = "0.1.9"
    other["nodes"][1]["labels"]["topology.kubernetes.io/zone"] = "zone-a"
    other["nodes"][1]["kernel"] = "6.1.0-rpi"
    other["nodes"][1]["architecture"] = "arm64"
    other["images"][0]["digest"] = "sha256:bb"
    assert differences(manifest(), other) == [
        'architectures: "amd64" -> "amd64, arm64"',
        'chart: "0.1.8" -> "0.1.9"',
        'images: "tools:0.1.0@sha256:aa" -> "tools:0.1.0@sha256:bb"',
        'kernels: "6.8.0-45-generic" -> "6.1.0-rpi, 6.8.0-45-generic"',
        'nodes (role/zone): "worker/zone-a: 1, worker/zone-b: 1" -> "worker/zone-a: 2"',
        "spec.peers: 5 -> 3",
    ]


def test_an_export_without_the_cluster_says_nothing_of_the_lab() -> None:
    bare = {"spec": None, "chart": None, "k3s_versions": None, "nodes": None, "images": None}
    assert lab_of(bare) == {"chart": None, "k3s": None}
    assert "nodes (role/zone)" in {line.split(":")[0] for line in differences(bare, manifest())}
