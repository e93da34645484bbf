"""plugins/filter/experiment.py: the experiment role's filters over nuclab.spec/experiments."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest
from ansible.errors import AnsibleFilterError

from nuclab import experiments
from nuclab.errors import ValidationError

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugins/filter/experiment.py"


def load_plugin() -> ModuleType:
    loader = importlib.util.spec_from_file_location("nuclab_filter_experiment", PLUGIN)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


F = load_plugin().FilterModule().filters()


def sts(name: str, replicas: int, ready: int, **status: object) -> dict:
    return {
        "metadata": {
            "name": f"nuclab-exp-{name}",
            "namespace": "nuclab",
            "generation": 2,
            "creationTimestamp": "2025-09-20T11:19:09Z",
            "labels": {"nuclab.io/experiment": name},
        },
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": replicas,
            "updateRevision": "nuclab-exp-x-1",
            **status,
        },
    }


def pod(index: int, phase: str = "Running", revision: str = "nuclab-exp-x-1", **status) -> dict:
    return {
        "metadata": {
            "name": f"nuclab-exp-x-{index}",
            "labels": {"controller-revision-hash": revision},
        },
        "status": {"phase": phase, **status},
    }


def test_every_filter_is_exported_with_the_nuclab_prefix() -> None:
    assert all(name.startswith("nuclab_experiment_") for name in F)
    assert len(F) == 8


def test_spec_filter_returns_every_field() -> None:
    result = F["nuclab_experiment_spec"]({"name": "purple", "peers": "5"})
    assert result["peers"] == 5
    assert result["cpu"] == 0.05
    assert set(result) >= {"name", "msg_size", "msg_rate", "uplink_bw", "params"}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"name": "Purple"}, "name"),
        ({"name": "p", "peers": 0}, "peers"),
        ({"name": "p", "cpu": 0}, "cpu"),
        ({"name": "p", "ram": 1}, "ram"),
        ({"name": "p", "uplink_bw": 0}, "uplink_bw"),
        ({"name": "p", "connect_to": -1}, "connect_to"),
        ({"name": "p", "colour": "red"}, "colour"),
    ],
)
def test_bad_input_becomes_a_filter_error_chained_to_the_validation_error(
    raw: dict, field: str
) -> None:
    with pytest.raises(AnsibleFilterError) as info:
        F["nuclab_experiment_spec"](raw)
    assert str(info.value).startswith(f"nuclab_experiment_spec: {field}: ")
    assert isinstance(info.value.__cause__, ValidationError)
    assert info.value.__cause__.field == field


def test_a_matrix_given_as_an_extra_var_reaches_the_chart_values_and_stays_on_update() -> None:
    # -e '{"matrix": [...]}': the playbook hands the list to the spec filter as it came
    matrix = [{"from": "zone-a", "to": "zone-b", "delay": "20", "rate": 100}]
    checked = F["nuclab_experiment_spec"]({"name": "p", "matrix": matrix})
    entry = {"from": "zone-a", "to": "zone-b", "delay": 20, "jitter": 0, "loss": 0,
             "rate": 100, "symmetric": True}  # fmt: skip
    assert checked["matrix"] == [entry]
    running = F["nuclab_experiment_values"](checked)
    assert running["network"]["matrix"] == [entry]
    base = F["nuclab_experiment_from_values"](running)
    scaled = F["nuclab_experiment_spec"]({"name": "p", "peers": 9}, base=base, create=False)
    assert scaled["matrix"] == [entry]
    cleared = F["nuclab_experiment_spec"]({"name": "p", "matrix": []}, base=base, create=False)
    assert F["nuclab_experiment_values"](cleared, current=running)["network"]["matrix"] == []


def test_a_bad_matrix_entry_is_named_in_the_filter_error() -> None:
    matrix = [{"from": "zone-a", "to": "zone-b", "delay": 20}, {"from": "zone-a", "to": "zone-c",
                                                                   "loss": 150}]  # fmt: skip
    with pytest.raises(AnsibleFilterError) as info:
        F["nuclab_experiment_spec"]({"name": "p", "matrix": matrix})
    assert str(info.value) == (
        "nuclab_experiment_spec: matrix[1].loss: 150 is not allowed; a number >= 0 and <= 100 "
        "in steps of 0.001 (percent)"
    )


def test_spec_filter_rejects_a_non_mapping_first() -> None:
    with pytest.raises(AnsibleFilterError, match="expected an experiment spec"):
        F["nuclab_experiment_spec"]("name=purple")


def test_existing_experiments_scale_to_zero_and_keep_their_fields() -> None:
    base = F["nuclab_experiment_from_values"](
        F["nuclab_experiment_values"](F["nuclab_experiment_spec"]({"name": "p", "msg_size": 99}))
    )
    scaled = F["nuclab_experiment_spec"]({"name": "p", "peers": 0}, base=base, create=False)
    assert (scaled["peers"], scaled["msg_size"]) == (0, 99)


def test_values_keep_overrides_and_current_values_under_the_spec() -> None:
    checked = F["nuclab_experiment_spec"]({"name": "p", "peers": 3})
    current = {"networkPolicy": {"enabled": False}, "experiment": {"name": "p", "peers": 9}}
    overrides = {"ports": [{"name": "gossip", "port": 9000}], "probe": {"interval": "2s"}}
    values = F["nuclab_experiment_values"](checked, overrides=overrides, current=current)
    assert values["experiment"]["peers"] == 3
    assert values["networkPolicy"] == {"enabled": False}
    # the spec's probe fields over the overrides' other probe settings
    assert values["probe"] == {"interval": "2s", "enabled": False, "maxTargets": 16}
    assert values["ports"] == [{"name": "gossip", "port": 9000}]
    assert values["resources"] == {"cpu": 0.05, "memory": 16}


def test_an_update_keeps_the_probe_of_the_running_experiment() -> None:
    running = F["nuclab_experiment_values"](
        F["nuclab_experiment_spec"]({"name": "p", "probe": "true", "probe_max_targets": "4"})
    )
    assert running["probe"] == {"enabled": True, "maxTargets": 4}
    base = F["nuclab_experiment_from_values"](running)
    scaled = F["nuclab_experiment_spec"]({"name": "p", "peers": 9}, base=base, create=False)
    assert (scaled["probe"], scaled["probe_max_targets"]) == (True, 4)
    off = F["nuclab_experiment_spec"]({"name": "p", "probe": False}, base=base, create=False)
    assert F["nuclab_experiment_values"](off, current=running)["probe"]["enabled"] is False


def test_names() -> None:
    assert F["nuclab_experiment_fullname"]("blue") == "nuclab-exp-blue"
    assert F["nuclab_experiment_name"]("blue") == "blue"
    with pytest.raises(AnsibleFilterError, match=r"^nuclab_experiment_fullname: name: ''"):
        F["nuclab_experiment_fullname"]("")


# The rollout and the pending report: nuclab.experiments, which the role's wait module and
# `nuclab create` share (nuclab.deploy).
def test_rolled_out_needs_observed_generation_and_all_counts() -> None:
    assert experiments.statefulset_rolled_out(sts("x", 5, 5), 5)
    assert not experiments.statefulset_rolled_out(sts("x", 5, 4), 5)
    assert not experiments.statefulset_rolled_out(sts("x", 5, 5, observedGeneration=1), 5)
    assert not experiments.statefulset_rolled_out(sts("x", 5, 5), 10)
    assert experiments.statefulset_rolled_out(sts("x", 0, 0, updatedReplicas=0), 0)
    assert not experiments.statefulset_rolled_out({}, 1)


def test_rollout_counts_running_pods_at_the_current_revision() -> None:
    pods = [pod(i) for i in range(3)]
    assert experiments.rollout_state(sts("x", 3, 3), pods, 3)["done"]
    old = [*pods[:2], pod(2, revision="nuclab-exp-x-0")]
    assert not experiments.rollout_state(sts("x", 3, 3), old, 3)["done"]
    state = experiments.rollout_state(sts("x", 3, 3), [*pods, pod(3, "Pending")], 3)
    assert state == {"done": False, "peers": 3, "pods": 4, "running": 3}


def test_pending_report_names_the_schedulers_reason() -> None:
    unschedulable = {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/6 nodes are available: 4 Insufficient cpu.",
            }
        ]
    }
    pods = [pod(0), pod(1), *[pod(i, "Pending", **unschedulable) for i in range(2, 10)]]
    report = experiments.pending_report("big", 10, pods, [], waited=30)
    assert report.startswith("experiment 'big': 2 of 10 peers running after 30s")
    assert "8 pod(s) Unschedulable: 0/6 nodes are available: 4 Insufficient cpu." in report
    assert "nuclab-exp-x-2, nuclab-exp-x-3" in report
    assert "and 3 more" in report


def test_pending_report_falls_back_to_warning_events() -> None:
    events = [
        {
            "involvedObject": {"name": "nuclab-exp-x-0"},
            "type": "Warning",
            "reason": "FailedScheduling",
            "message": "0/6 nodes are available: 6 node(s) didn't match Pod's node affinity",
        }
    ]
    report = experiments.pending_report("x", 1, [pod(0, "Pending")], events)
    assert "FailedScheduling: 0/6 nodes are available" in report


def test_rows_and_table() -> None:
    rows = F["nuclab_experiment_rows"]([sts("purple", 5, 5), sts("blue", 4, 3), {"metadata": {}}])
    assert [row["experiment"] for row in rows] == ["blue", "purple"]
    lines = F["nuclab_experiment_table"](rows)
    assert lines[0].split() == [
        "EXPERIMENT",
        "FULLNAME",
        "SCALE",
        "RUNNING",
        "STARTED",
        "AT",
        "AGE",
        "SIMULATED",
        "PROBLEMS",
    ]
    assert lines[1].split()[:5] == ["blue", "nuclab-exp-blue", "4", "3", "2025-09-20T11:19:09Z"]


def test_plugin_falls_back_to_the_repository_source_without_the_venv(tmp_path: Path) -> None:
    # -S: no site processing, so the venv's editable nuclab install is invisible; ansible still
    # imports from site-packages on PYTHONPATH, as with an Ansible installed outside the venv.
    site = sysconfig.get_paths()["purelib"]
    code = (
        "import importlib.util, sys\n"
        "try:\n    import nuclab\nexcept ImportError:\n    pass\n"
        "else:\n    sys.exit('nuclab importable')\n"
        f"spec = importlib.util.spec_from_file_location('f', {str(PLUGIN)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "import nuclab; print(nuclab.__file__)\n"
        "print(m.nuclab_experiment_fullname('x'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={"PYTHONPATH": site},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith(str(REPO / "src"))
    assert second == "nuclab-exp-x"
