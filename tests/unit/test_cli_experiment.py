"""nuclab create/scale/delete/list: what the runner is asked to run, and bad input."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nuclab import cli
from nuclab.commands import experiment as cmd

REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


def test_create_asks_the_runner_for_experiment_yml_with_the_given_fields_only() -> None:
    args = parse(
        "create", "--name", "purple", "--peers", "5", "--msg-size", "1440", "--msg-rate", "2000",
        "--cpu", "0.05", "--ram", "16", "--downlink-bw", "16", "--uplink-bw", "16",
        "--connect-to", "5", "--timeout", "60",
    )  # fmt: skip
    request = cmd.create_request(args, repo=REPO)
    assert request.project_dir == str(REPO)
    assert request.playbook == "experiment.yml"
    assert request.inventory == str(REPO / "inventory/sim")
    assert request.envvars["ANSIBLE_CONFIG"] == str(REPO / "ansible.cfg")
    assert request.envvars["PATH"].startswith(str(Path(sys.executable).parent))
    assert request.extravars == {
        "experiment_state": "present",
        "experiment_spec": {
            "name": "purple",
            "peers": 5,
            "msg_size": 1440,
            "msg_rate": 2000,
            "cpu": 0.05,
            "ram": 16,
            "downlink_bw": 16,
            "uplink_bw": 16,
            "connect_to": 5,
        },
        "experiment_wait_timeout": 60,
    }


def test_create_from_a_spec_file_lets_flags_win(tmp_path: Path) -> None:
    args = parse("create", "-f", str(REPO / "experiments/purple.yml"), "--peers", "8")
    spec = cmd.create_request(args, repo=REPO).extravars["experiment_spec"]
    assert spec["name"] == "purple"
    assert spec["peers"] == 8
    assert spec["cpu"] == 0.05


def test_create_probe_flags_reach_the_runner_as_spec_fields() -> None:
    args = parse("create", "--name", "purple", "--probe", "--probe-max-targets", "0")
    given = cmd.create_request(args, repo=REPO).extravars["experiment_spec"]
    assert given == {"name": "purple", "probe": True, "probe_max_targets": 0}
    off = cmd.create_request(parse("create", "--name", "purple", "--no-probe"), repo=REPO)
    assert off.extravars["experiment_spec"] == {"name": "purple", "probe": False}
    # neither flag: the field is left to the running experiment or the lab's defaults
    plain = cmd.create_request(parse("create", "--name", "purple"), repo=REPO)
    assert "probe" not in plain.extravars["experiment_spec"]


def test_create_with_labels_zones_and_params(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUCLAB_INVENTORY", str(REPO / "inventory/sim"))
    args = parse(
        "create", "--name", "g", "--zone", "zone-a", "--zone", "zone-b",
        "--label", "gpu=nvidia", "--param", "topic=t1", "-n", "lab2",
    )  # fmt: skip
    request = cmd.create_request(args, repo=REPO)
    assert request.extravars["experiment_spec"] == {
        "name": "g",
        "zones": ["zone-a", "zone-b"],
        "node_labels": {"gpu": "nvidia"},
        "params": {"topic": "t1"},
    }
    assert request.extravars["experiment_namespace"] == "lab2"


MATRIX = [
    {"from": "zone-a", "to": "zone-b", "delay": 20, "jitter": 2, "rate": 100},
    {"from": "zone-a", "to": "zone-a", "loss": 0.5, "symmetric": False},
]
CHECKED = [
    {"from": "zone-a", "to": "zone-b", "delay": 20, "jitter": 2, "loss": 0, "rate": 100,
     "symmetric": True},
    {"from": "zone-a", "to": "zone-a", "delay": 0, "jitter": 0, "loss": 0.5, "rate": None,
     "symmetric": False},
]  # fmt: skip


@pytest.mark.parametrize("shape", ["list", "mapping"])
def test_create_reads_a_matrix_file_and_sends_the_checked_entries(
    tmp_path: Path, shape: str
) -> None:
    matrix_file = tmp_path / "matrix.yml"
    matrix_file.write_text(yaml.safe_dump(MATRIX if shape == "list" else {"matrix": MATRIX}))
    args = parse("create", "--name", "purple", "--matrix", str(matrix_file))
    given = cmd.create_request(args, repo=REPO).extravars["experiment_spec"]
    assert given == {"name": "purple", "matrix": CHECKED}


def test_the_matrix_flag_wins_over_a_spec_files_matrix(tmp_path: Path) -> None:
    spec_file = tmp_path / "purple.yml"
    spec_file.write_text(yaml.safe_dump({"experiment": {"name": "purple", "matrix": MATRIX}}))
    from_file = cmd.create_request(parse("create", "-f", str(spec_file)), repo=REPO)
    assert from_file.extravars["experiment_spec"]["matrix"] == CHECKED
    empty = tmp_path / "none.yml"
    empty.write_text("[]\n")
    args = parse("create", "-f", str(spec_file), "--matrix", str(empty))
    assert cmd.create_request(args, repo=REPO).extravars["experiment_spec"]["matrix"] == []


def test_scale_and_delete_require_the_experiment_to_exist() -> None:
    scale = cmd.scale_request(parse("scale", "purple", "0"), repo=REPO)
    assert scale.extravars == {
        "experiment_state": "present",
        "experiment_spec": {"name": "purple", "peers": 0},
        "experiment_must_exist": True,
    }
    delete = cmd.delete_request(parse("delete", "purple", "--timeout", "30"), repo=REPO)
    assert delete.extravars == {
        "experiment_state": "absent",
        "experiment_spec": {"name": "purple"},
        "experiment_must_exist": True,
        "experiment_wait_timeout": 30,
    }


def test_delete_exports_first_unless_no_export_is_given() -> None:
    # Without the flag the inventory decides (role default: export); --no-export turns it off.
    default = cmd.delete_request(parse("delete", "purple"), repo=REPO)
    assert "experiment_export" not in default.extravars
    off = cmd.delete_request(parse("delete", "purple", "--no-export"), repo=REPO)
    assert off.extravars["experiment_export"] is False


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["create", "--name", "Purple"], "name"),
        (["create", "--name", "a" * 42], "name"),
        (["create", "--name", ""], "name"),
        (["create", "--peers", "5"], "name"),
        (["create", "--name", "p", "--peers", "0"], "peers"),
        (["create", "--name", "p", "--peers", "five"], "peers"),
        (["create", "--name", "p", "--cpu", "0"], "cpu"),
        (["create", "--name", "p", "--ram", "2"], "ram"),
        (["create", "--name", "p", "--uplink-bw", "0"], "uplink_bw"),
        (["create", "--name", "p", "--downlink-bw", "-1"], "downlink_bw"),
        (["create", "--name", "p", "--connect-to", "-1"], "connect_to"),
        (["create", "--name", "p", "--probe", "--probe-max-targets", "-1"], "probe_max_targets"),
        (["create", "--name", "p", "--probe-max-targets", "all"], "probe_max_targets"),
        (["create", "--name", "p", "--label", "gpu"], "node_labels"),
        (["scale", "purple", "-1"], "peers"),
        (["scale", "Purple", "3"], "name"),
        (["delete", "PURPLE"], "name"),
    ],
)
def test_bad_input_is_one_line_exit_2_before_anything_runs(
    argv: list[str], field: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # An inventory that does not exist: had anything got as far as the runner, the error
    # would name the inventory, not the field.
    monkeypatch.setenv("NUCLAB_INVENTORY", "/nonexistent/inventory")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"nuclab: error: {field}: ")
    assert "Traceback" not in err


def test_bad_spec_files_are_rejected(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flat = tmp_path / "flat.yml"
    flat.write_text("name: purple\npeers: 5\n")
    assert cli.main(["create", "-f", str(flat)]) == 2
    assert "one key, 'experiment'" in capsys.readouterr().err
    typo = tmp_path / "typo.yml"
    typo.write_text("experiment:\n  name: purple\n  pers: 5\n")
    assert cli.main(["create", "-f", str(typo)]) == 2
    assert capsys.readouterr().err.startswith("nuclab: error: pers: 5 is not allowed; unknown")
    assert cli.main(["create", "-f", str(tmp_path / "missing.yml")]) == 2
    assert "readable spec file" in capsys.readouterr().err


def test_missing_inventory_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("NUCLAB_INVENTORY", "/nonexistent/inventory")
    assert cli.main(["create", "--name", "purple"]) == 2
    assert "inventory: '/nonexistent/inventory'" in capsys.readouterr().err


def test_list_rejects_unknown_output_formats(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["list", "-o", "xml"])
    assert info.value.code == 2


def test_failure_message_keeps_the_filters_sentence() -> None:
    data = {
        "task": "Check the spec",
        "res": {
            "msg": "Task failed: Finalization of task args for 'ansible.builtin.set_fact' failed:\n"
            "The filter plugin 'nuclab_experiment_spec' failed: nuclab_experiment_spec: "
            "cpu: 0 is not allowed;\n a number > 0"
        },
    }
    assert cmd.failure_message(data) == (
        "nuclab_experiment_spec: cpu: 0 is not allowed; a number > 0"
    )
    assert cmd.failure_message({"task": "T", "res": {}}) == "task 'T' failed"


def test_progress_prints_tasks_and_keeps_the_failure() -> None:
    out = io.StringIO()
    progress = cmd.Progress(stream=out)
    progress({"event": "playbook_on_task_start", "event_data": {"task": "Install the release"}})
    progress({"event": "playbook_on_task_start", "event_data": {"task": "Validating arguments"}})
    progress(
        {"event": "runner_on_failed", "event_data": {"res": {"msg": "x"}, "ignore_errors": True}}
    )
    assert progress.failure is None
    progress(
        {"event": "runner_on_failed", "event_data": {"res": {"msg": "experiment 'p': 2 of 5"}}}
    )
    assert out.getvalue() == "[INFO] Install the release\n"
    assert progress.failure == "experiment 'p': 2 of 5"


def _inventory(root: Path, group_vars_all: str) -> Path:
    """An inventory of localhost and host a whose group_vars/all.yml is ``group_vars_all``."""
    (root / "group_vars").mkdir(parents=True)
    (root / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n    a:\n")
    (root / "group_vars/all.yml").write_text(group_vars_all)
    return root


def test_the_lab_is_found_where_the_inventory_says(tmp_path: Path) -> None:
    # an inventory that names no kubeconfig: its artifacts/kubeconfig, once the lab wrote it
    inventory = tmp_path / "inv"
    (inventory / "artifacts").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    a:\n")
    assert cmd.lab_target(parse("list", "-i", str(inventory))) == (None, "nuclab")
    (inventory / "artifacts/kubeconfig").write_text("{}")
    assert cmd.lab_target(parse("list", "-i", str(inventory))) == (
        str(inventory / "artifacts/kubeconfig"), "nuclab"
    )  # fmt: skip

    # one that names them (templated by Ansible): what experiment.yml uses, the CLI uses
    named = _inventory(
        tmp_path / "named",
        "lab_kubeconfig: '{{ inventory_dir }}/secret/admin.kubeconfig'\n"
        "experiment_namespace: team-a\n",
    )
    (named / "secret").mkdir()
    (named / "secret/admin.kubeconfig").write_text("{}")
    assert cmd.lab_target(parse("list", "-i", str(named))) == (
        str(named / "secret/admin.kubeconfig"), "team-a"
    )  # fmt: skip
    # the flags win
    assert cmd.lab_target(parse("list", "-i", str(named), "-n", "b")) == (
        str(named / "secret/admin.kubeconfig"), "b"
    )  # fmt: skip
    with pytest.raises(cmd.ValidationError, match=r"kubeconfig: .* an existing kubeconfig file"):
        cmd.lab_target(parse("list", "--kubeconfig", str(tmp_path / "nope")))


def test_the_playbook_path_gets_the_kubeconfig_and_namespace_given(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text("{}")
    args = parse("delete", "purple", "--kubeconfig", str(kubeconfig), "-n", "team-a")
    request = cmd.delete_request(args, repo=REPO)
    assert request.extravars["experiment_kubeconfig"] == str(kubeconfig)
    assert request.extravars["experiment_namespace"] == "team-a"
    assert "experiment_kubeconfig" not in cmd.delete_request(parse("delete", "x"), REPO).extravars


def test_list_formats() -> None:
    rows = [
        {
            "experiment": "blue",
            "fullname": "nuclab-exp-blue",
            "namespace": "nuclab",
            "scale": 4,
            "running": 4,
            "started_at": "2025-09-20T11:19:09Z",
            "age_seconds": 2304,
        }
    ]
    table = cmd.experiments.format_rows(rows, "table").splitlines()
    assert table[1].split() == [
        "blue",
        "nuclab-exp-blue",
        "4",
        "4",
        "2025-09-20T11:19:09Z",
        "38m24s",
        "0",
        "-",
    ]
    assert json.loads(cmd.experiments.format_rows(rows, "json")) == rows
    assert cmd.experiments.format_rows([], "table").strip().startswith("EXPERIMENT")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (24, "24s"), (2304, "38m24s"), (7380, "2h3m0s"), (3 * 86400 + 4 * 3600, "3d4h")],
)
def test_age_is_shown_as_the_reference_lab_did(seconds: int, shown: str) -> None:
    assert cmd.experiments.format_age(seconds) == shown


def test_deep_merge_merges_mappings_and_replaces_the_rest() -> None:
    merged = cmd.experiments.deep_merge(
        {"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2], "e": 3}}, {"d": {"x": 1}}
    )
    assert merged == {"a": {"b": 1, "c": [2], "e": 3}, "d": {"x": 1}}


def test_list_tells_simulated_peers_from_real_ones_and_shows_oomkilled() -> None:
    sts = {
        "metadata": {
            "name": "nuclab-exp-mix",
            "namespace": "nuclab",
            "labels": {"nuclab.io/experiment": "mix"},
            "creationTimestamp": "2025-09-20T11:19:09Z",
        },
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 2},
    }

    def pod(i: int, node: str, **status: Any) -> dict[str, Any]:
        return {
            "metadata": {
                "name": f"nuclab-exp-mix-{i}",
                "namespace": "nuclab",
                "labels": {"nuclab.io/experiment": "mix"},
            },
            "spec": {"nodeName": node},
            "status": {"phase": "Running", **status},
        }

    oom = {
        "containerStatuses": [
            {
                "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
            }
        ]
    }
    nodes = [
        {"metadata": {"name": "nuc-3", "annotations": {"kwok.x-k8s.io/node": "fake"}}},
        {"metadata": {"name": "nuc-2", "labels": {"nuclab.io/node-kind": "real"}}},
    ]
    pods = [pod(0, "nuc-2"), pod(1, "nuc-3"), pod(2, "nuc-2", **oom)]
    (row,) = cmd.experiments.experiment_rows([sts], pods=pods, nodes=nodes)
    assert row["simulated"] == 1
    assert [p["simulated"] for p in row["peers"]] == [False, True, False]
    assert row["problems"] == ["nuclab-exp-mix-2: OOMKilled, CrashLoopBackOff, 2 restarts"]
    line = cmd.experiments.format_rows([row], "table").splitlines()[1]
    assert line.split()[-7:] == [
        "1",
        "peer",
        "2:",
        "OOMKilled,",
        "CrashLoopBackOff,",
        "2",
        "restarts",
    ]


def test_netem_is_refused_on_the_nodes_the_peers_may_use_whose_kernel_lacks_it() -> None:
    def node(name: str, zone: str, netem: str | None, role: str = "worker") -> dict[str, Any]:
        labels = {"nuclab.io/role": role, "topology.kubernetes.io/zone": zone}
        if netem:
            labels["nuclab.io/netem"] = netem
        return {"metadata": {"name": name, "labels": labels}}

    nodes = [
        node("nuc-2", "zone-a", "false"),
        node("nuc-4", "zone-b", "true"),
        node("nuc-3", "zone-a", None),  # bare metal or kwok: not judged
        node("nuc-1", "zone-a", "false", role="client"),
    ]
    refuse = cmd.experiments.netem_refusal
    said = refuse({"latency": 10, "jitter": 0, "loss": 0}, "worker", [], {}, nodes)
    assert said and "latency 10" in said and "nuc-2" in said and "nuc-1" not in said
    assert refuse({"latency": 10}, "worker", ["zone-b"], {}, nodes) is None
    assert refuse({"latency": 0, "loss": 0}, "worker", [], {}, nodes) is None


def test_create_has_a_flag_for_each_field_with_one_and_its_range_in_the_help() -> None:
    subparsers = argparse.ArgumentParser().add_subparsers()
    cmd.register(subparsers)
    create = subparsers.choices["create"]
    flags = {flag for action in create._actions for flag in action.option_strings}
    assert {
        "--name", "--peers", "--msg-size", "--msg-rate", "--connect-to", "--cpu", "--ram",
        "--downlink-bw", "--uplink-bw", "--latency", "--jitter", "--loss", "--probe-max-targets",
        "--role", "--zone", "--label", "--param", "--image", "--probe", "--no-probe", "-f",
        "--matrix",
    } <= flags  # fmt: skip
    text = " ".join(create.format_help().split())
    assert "--cpu CPU CPU limit per peer in cores (0.05 = 5%): > 0 to 64 in steps of 0.001" in text
    assert f"--peers PEERS number of peers: 1 to {cmd.spec.PEERS_MAX}" in text
    assert "--matrix FILE zone-to-zone links" in text


def test_export_finds_the_lab_and_its_prometheus_where_the_export_role_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nuclab.commands import export

    for key in ("NUCLAB_INVENTORY", "NUCLAB_PROMETHEUS_URL", "NUCLAB_LOKI_URL"):
        monkeypatch.delenv(key, raising=False)
    named = _inventory(
        tmp_path / "named",
        "lab_kubeconfig: '{{ inventory_dir }}/admin.kubeconfig'\n"
        "experiment_namespace: team-a\n"
        "lab_prometheus_url: 'http://{{ \"10.0.0.1\" }}:30090'\n",
    )
    (named / "admin.kubeconfig").write_text("{}")
    # the window from the release: the inventory's lab, namespace and Prometheus, no Loki
    assert export._lab(parse("export", "p", "-i", str(named))) == (
        str(named / "admin.kubeconfig"), "team-a", "http://10.0.0.1:30090", ""
    )  # fmt: skip
    # what is given wins
    given = parse("export", "p", "-i", str(named), "-n", "b", "--prometheus-url", "http://p",
                  "--loki-url", "http://l")  # fmt: skip
    assert export._lab(given) == (str(named / "admin.kubeconfig"), "b", "http://p", "http://l")
    # a fixed window with nothing named reads no lab (not even the repository's inventory/sim)
    fixed = parse("export", "p", "--start", "1", "--end", "2", "--prometheus-url", "http://p")
    assert export._lab(fixed) == (None, "nuclab", "http://p", "")
    # ... unless one is named
    monkeypatch.setenv("NUCLAB_INVENTORY", str(named))
    assert export._lab(fixed)[:3] == (str(named / "admin.kubeconfig"), "team-a", "http://p")
