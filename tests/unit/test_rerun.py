"""``nuclab rerun``'s checks, from a dataset's manifest and what the lab has (nuclab.rerun)."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nuclab import rerun, spec
from nuclab.errors import NuclabError

ROLE, ZONE = "nuclab.io/role", "topology.kubernetes.io/zone"


def manifest() -> dict[str, Any]:
    """What ``nuclab export`` writes of a run of 3 peers on two workers of zone a and one of b."""
    parsed = spec.parse({"name": "purple", "peers": 3, "cpu": 0.05, "ram": 16}, create=True)

    def node(name: str, zone: str) -> dict[str, Any]:
        return {"name": name, "labels": {ROLE: "worker", ZONE: zone}}

    return {
        "experiment": "purple",
        "created": "2026-12-06T19:27:54Z",
        "spec": spec.to_values(parsed),
        "chart": {"name": "experiment", "version": "0.1.8", "appVersion": "0.1.0"},
        "images": [{"image": "localhost/nuclab/tools:0.1.0", "digest": "sha256:aa"}],
        "nodes": [node("nuc-2", "a"), node("nuc-3", "a"), node("nuc-4", "b"), node("nuc-5", "b")],
        "pods": [
            {"name": f"nuclab-exp-purple-{i}", "node": n}
            for i, n in enumerate(["nuc-2", "nuc-3", "nuc-4"])
        ],
    }


def lab(*zones: str) -> list[dict[str, Any]]:
    return [{"name": f"n{i}", "labels": {ROLE: "worker", ZONE: z}} for i, z in enumerate(zones)]


def test_the_same_lab_differs_in_nothing() -> None:
    assert rerun.differences(manifest(), "0.1.8", lab("a", "a", "b"), {"sha256:aa"}) == []


def test_each_difference_is_one_line_naming_both_sides() -> None:
    found = rerun.differences(manifest(), "0.1.9", lab("a", "b", "b"), {"sha256:bb"})
    assert found == [
        "chart: the run used experiment chart 0.1.8; this lab has 0.1.9",
        "image localhost/nuclab/tools:0.1.0: the run used sha256:aa; this lab does not have it",
        "placement: the run used 2 node(s) of role/zone worker/a; this lab has 1",
    ]


def test_nodes_the_run_did_not_use_are_not_needed() -> None:
    # nuc-5 (zone b) held no pod: a lab with one node of zone b is enough
    assert rerun.differences(manifest(), "0.1.8", lab("a", "a", "b"), {"sha256:aa"}) == []


def test_the_spec_comes_back_under_the_new_name() -> None:
    fields = rerun.spec_fields(manifest(), "purple-2")
    assert fields["name"] == "purple-2"
    again = spec.parse(fields, create=True)
    original = spec.parse(spec.from_values(manifest()["spec"]), create=True)
    assert {**original.as_dict(), "name": "purple-2"} == again.as_dict()
    assert rerun.spec_fields(manifest(), None)["name"] == "purple"


def test_a_dataset_without_its_release_cannot_be_run_again() -> None:
    bare = {**manifest(), "spec": None}
    with pytest.raises(NuclabError, match="holds no spec"):
        rerun.spec_fields(bare, "x")


def test_a_bad_new_name_is_refused_naming_it() -> None:
    with pytest.raises(NuclabError, match="name: 'Bad_Name'"):
        rerun.spec_fields(manifest(), "Bad_Name")


def _dataset(tmp_path: Path) -> Path:
    data = tmp_path / "ds"
    (data / "metrics").mkdir(parents=True)
    part = data / "metrics" / "m.parquet"
    part.write_bytes(b"rows")
    files = [{"path": "metrics/m.parquet", "sha256": hashlib.sha256(b"rows").hexdigest()}]
    (data / "manifest.json").write_text(json.dumps({**manifest(), "files": files}))
    return data


def test_the_parent_record_names_the_dataset_and_travels_in_the_release_values(
    tmp_path: Path,
) -> None:
    data = _dataset(tmp_path)
    loaded = rerun.load_manifest(data)
    record = rerun.parent(data, loaded, ["chart: ..."])
    assert (
        record["manifest_sha256"]
        == hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()
    )
    assert (record["experiment"], record["dataset"]) == ("purple", str(data.resolve()))
    values = copy.deepcopy(manifest()["spec"]) | rerun.annotation(record)
    assert rerun.recorded_parent(values) == record
    assert rerun.recorded_parent(manifest()["spec"]) is None


def test_a_changed_dataset_is_refused(tmp_path: Path) -> None:
    data = _dataset(tmp_path)
    (data / "metrics" / "m.parquet").write_bytes(b"other rows")
    with pytest.raises(NuclabError, match=r"m\.parquet"):
        rerun.load_manifest(data)


def test_a_folder_that_is_no_export_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NuclabError, match=r"no manifest\.json") as caught:
        rerun.load_manifest(tmp_path)
    assert caught.value.exit_code == 3


def test_flags_change_the_rerun_and_each_change_is_recorded() -> None:
    fields = rerun.spec_fields(manifest(), "purple-half")
    new, changed = rerun.changed_spec(fields, {"uplink_bw": "8", "peers": "3", "name": "x"})
    # a flag equal to the run's value is no change, and the name is never one
    assert changed == {"uplink_bw": {"from": 16, "to": 8}}
    assert new == {**fields, "uplink_bw": 8, "peers": 3, "name": "x"}
    assert rerun.changed_spec(fields, {}) == (fields, {})


def test_a_bad_flag_of_a_rerun_names_the_field_and_its_range() -> None:
    fields = rerun.spec_fields(manifest(), None)
    with pytest.raises(NuclabError, match=r"^uplink_bw: '-3' is not allowed; a number > 0"):
        rerun.changed_spec(fields, {"uplink_bw": "-3"})


def test_rerun_takes_creates_spec_flags_and_refuses_a_bad_one_before_the_lab(
    tmp_path: Path,
) -> None:
    # The CLI as a user runs it: a dataset, a bad flag, a lab that does not exist. The flag is
    # refused first (exit 2, one line), so nothing was read from or done to any lab.
    data = _dataset(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "nuclab.cli", "rerun", str(data), "--uplink-bw", "-3",
         "--kubeconfig", str(tmp_path / "no-such-kubeconfig")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "nuclab: error: uplink_bw: '-3' is not allowed; a number > 0 and <= 100000 in steps of "
        "0.001 (Mbit/s), or null for none"
    ]
