"""Campaign files and their record (nuclab.campaign): the runs a file plans, the checks on it,
and what a resumed campaign does again. The campaign on a lab is tests/integration/test_campaign.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from nuclab import campaign
from nuclab.errors import ValidationError
from nuclab.kube import LabError

BODY: dict[str, Any] = {
    "name": "bw",
    "experiment": {"peers": 2, "ram": 16},
    "grid": {"downlink_bw": [16, 8], "msg_size": [512, 1440]},
    "repeats": 2,
    "duration": "30s",
}


def write(tmp_path: Path, body: dict[str, Any], name: str = "c.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"campaign": body}, sort_keys=False))
    return path


def test_the_grid_in_the_order_written_each_combination_repeated(tmp_path: Path) -> None:
    c = campaign.load(write(tmp_path, BODY))
    assert c.duration == 30.0 and c.output == Path("datasets/bw")
    assert [(r.name, r.values, r.repeat) for r in c.runs[:3]] == [
        ("bw-1", {"downlink_bw": 16, "msg_size": 512}, 1),
        ("bw-2", {"downlink_bw": 16, "msg_size": 512}, 2),
        ("bw-3", {"downlink_bw": 16, "msg_size": 1440}, 1),
    ]
    assert len(c.runs) == 8 and c.runs[-1].values == {"downlink_bw": 8, "msg_size": 1440}
    # the fields given, checked: the lab's defaults fill the rest, as for nuclab create
    assert c.runs[0].fields == {"peers": 2, "ram": 16, "downlink_bw": 16, "msg_size": 512,
                                "name": "bw-1"}  # fmt: skip


def test_a_base_spec_file_is_read_relative_to_the_campaign(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "p.yml").write_text(
        yaml.safe_dump({"experiment": {"name": "p", "cpu": 0.1}})
    )
    c = campaign.load(write(tmp_path, {**BODY, "experiment": "specs/p.yml", "grid": None}))
    assert [r.fields for r in c.runs] == [
        {"cpu": 0.1, "name": "bw-1"},
        {"cpu": 0.1, "name": "bw-2"},
    ]


@pytest.mark.parametrize(
    ("change", "field", "shown"),
    [
        ({"grid": {"peerz": [1]}}, "campaign.grid.peerz", "a spec field"),
        ({"grid": {"peers": []}}, "campaign.grid.peers", "a non-empty list"),
        ({"grid": {"peers": [2, 0]}}, "campaign.experiment.peers (peers=0)", ">= 1"),
        ({"repeats": 0}, "campaign.repeats", "1 to 100"),
        ({"duration": "soon"}, "campaign.duration", "30s"),
        ({"name": "x" * 40}, "campaign.name", "-<n>"),
        ({"name": "Bad"}, "campaign.name", "DNS-1123"),
        ({"experiment": {"name": "p"}}, "campaign.experiment.name", "<campaign>-<n>"),
        ({"runs": 3}, "campaign.runs", "unknown key"),
        ({"repeats": 100, "grid": {"peers": list(range(1, 12))}}, "campaign.grid", "1000"),
    ],
)
def test_bad_input_names_the_field(
    tmp_path: Path, change: dict[str, Any], field: str, shown: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        campaign.load(write(tmp_path, {**BODY, **change}))
    assert caught.value.field == field
    assert shown in caught.value.allowed


class Lab:
    """A lab's record of what was asked of it, failing the runs named in ``fail``."""

    def __init__(self, fail: set[str] = frozenset(), running: set[str] = frozenset()) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = set(fail)
        self.running = set(running)

    def ops(self) -> campaign.Lab:
        def create(run: campaign.Run) -> None:
            self.calls.append(("create", run.name))
            self.running.add(run.name)
            if run.name in self.fail:
                raise LabError(f"1 of 2 peers of {run.name} pending")

        def export(name: str, out: Path) -> None:
            self.calls.append(("export", name))
            out.mkdir(parents=True)
            (out / "manifest.json").write_text(json.dumps({"experiment": name, "files": []}))

        def delete(name: str) -> None:
            self.calls.append(("delete", name))
            self.running.discard(name)

        return campaign.Lab(
            exists=lambda name: name in self.running, create=create, export=export,
            delete=delete, wait=lambda s: None, say=lambda text: None,
        )  # fmt: skip


def small(tmp_path: Path) -> campaign.Campaign:
    body = {**BODY, "grid": {"msg_size": [512, 1440]}, "output": str(tmp_path / "out")}
    return campaign.load(write(tmp_path, body))


def test_a_failed_run_is_recorded_cleaned_up_and_the_campaign_goes_on(tmp_path: Path) -> None:
    c = small(tmp_path)
    lab = Lab(fail={"bw-2"})
    record = campaign.Record.open(c)
    campaign.execute(record, record.todo(False), lab.ops())
    assert ("delete", "bw-2") in lab.calls and ("export", "bw-2") not in lab.calls
    saved = json.loads((c.output / "campaign.json").read_text())
    assert [(r["name"], r["status"]) for r in saved["runs"]] == [
        ("bw-1", "done"), ("bw-2", "failed"), ("bw-3", "done"), ("bw-4", "done"),
    ]  # fmt: skip
    assert saved["runs"][1]["error"] == "1 of 2 peers of bw-2 pending"
    assert campaign.Record.open(c).datasets() == [c.output / n for n in ("bw-1", "bw-3", "bw-4")]
    # resumed: nothing to do unless the failed run is asked for again
    assert campaign.Record.open(c).todo(False) == []
    assert [r.name for r in campaign.Record.open(c).todo(True)] == ["bw-2"]


def test_a_resumed_campaign_cleans_up_the_cut_off_run_and_keeps_the_done(tmp_path: Path) -> None:
    c = small(tmp_path)
    record = campaign.Record.open(c)
    campaign.execute(record, list(c.runs[:1]), Lab().ops())
    record.mark(c.runs[1], campaign.RUNNING)  # cut off while bw-2 ran: its experiment is left
    lab = Lab(running={"bw-2"})
    resumed = campaign.Record.open(c)
    assert [r.name for r in resumed.todo(False)] == ["bw-2", "bw-3", "bw-4"]
    campaign.check_free(resumed, resumed.todo(False), lab.ops().exists)  # bw-2 is ours
    campaign.execute(resumed, resumed.todo(False), lab.ops())
    assert lab.calls[:3] == [("delete", "bw-2"), ("create", "bw-2"), ("export", "bw-2")]
    assert all(s == "done" for s in (e.status for e in campaign.Record.open(c).entries.values()))


def test_an_export_that_ended_before_the_cut_is_kept(tmp_path: Path) -> None:
    c = small(tmp_path)
    record = campaign.Record.open(c)
    record.mark(c.runs[0], campaign.RUNNING)
    Lab().ops().export("bw-1", c.output / "bw-1")
    lab = Lab()
    campaign.execute(record, [c.runs[0]], lab.ops())
    assert lab.calls == [] and record.status(c.runs[0]) == campaign.DONE


def test_an_experiment_the_campaign_did_not_start_is_refused(tmp_path: Path) -> None:
    c = small(tmp_path)
    record = campaign.Record.open(c)
    with pytest.raises(ValidationError) as caught:
        campaign.check_free(record, record.todo(False), Lab(running={"bw-3"}).ops().exists)
    assert "experiment 'bw-3' exists" in caught.value.allowed


def test_a_changed_file_does_not_resume_into_the_old_record(tmp_path: Path) -> None:
    c = small(tmp_path)
    campaign.Record.open(c).mark(c.runs[0], campaign.DONE)
    body = {**BODY, "grid": {"msg_size": [512, 9000]}, "output": str(tmp_path / "out")}
    changed = campaign.load(write(tmp_path, body))
    with pytest.raises(ValidationError) as caught:
        campaign.Record.open(changed)
    assert caught.value.field == "campaign.output" and "changed" in caught.value.allowed


def test_a_folder_of_something_else_is_not_taken_over(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ValidationError) as caught:
        campaign.Record.open(small(tmp_path))
    assert caught.value.field == "campaign.output"


def test_the_shipped_example_plans_two_bandwidths_twice_on_the_reference_spec() -> None:
    repo = Path(__file__).resolve().parents[2]
    c = campaign.load(repo / "experiments" / "campaign-bandwidth.yml")
    assert [(r.name, r.values["downlink_bw"]) for r in c.runs] == [
        ("purple-bw-1", 16), ("purple-bw-2", 16), ("purple-bw-3", 8), ("purple-bw-4", 8),
    ]  # fmt: skip
    # the reference figures, from experiments/purple.yml
    assert {k: c.runs[0].fields[k] for k in ("cpu", "ram", "uplink_bw")} == {
        "cpu": 0.05, "ram": 16, "uplink_bw": 16,
    }  # fmt: skip


def test_a_half_written_dataset_of_a_cut_off_run_is_not_taken_for_done(tmp_path: Path) -> None:
    c = small(tmp_path)
    record = campaign.Record.open(c)
    record.mark(c.runs[0], campaign.RUNNING)
    (c.output / "bw-1").mkdir()  # no manifest: not an export's folder
    lab = Lab()
    with pytest.raises(ValidationError) as caught:
        campaign.execute(record, [c.runs[0]], lab.ops())
    assert caught.value.field == str(c.output / "bw-1") and lab.calls == []
    assert record.status(c.runs[0]) == campaign.RUNNING
