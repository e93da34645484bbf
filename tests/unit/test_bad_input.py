"""Bad input, tried as a new user would (issue 11): each is refused with exit 2 and one line on
stderr naming the field, the value and what is allowed, no traceback, and nothing created.

The commands run as a user runs them (a fresh ``python -m nuclab.cli``). Where a command would
talk to a lab, the inventory's kubeconfig points at a closed loopback port: had the command got
as far as the lab, it would have ended with "unreachable" (exit 1), not with the field's line.
Inputs that need a lab to be judged (``list -n typo``) are in tests/integration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nuclab import cli, spec
from nuclab.commands import report as report_command
from nuclab.errors import ValidationError
from nuclab.export import prom
from nuclab.net import free_port

REPO = Path(__file__).resolve().parents[2]


def nuclab(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUCLAB_REPO": str(REPO)}
    env.pop("NUCLAB_PROMETHEUS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "nuclab.cli", *argv],
        cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def assert_refused(proc: subprocess.CompletedProcess[str], field: str, *shown: str) -> str:
    """Exit 2, one line naming the field (and the value or the limit), no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert proc.returncode == 2, proc.stderr
    line = lines[0]
    assert line.startswith(f"nuclab: error: {field}"), line
    assert "is not allowed;" in line or "not valid" in line, line
    for text in shown:
        assert text in line, line
    assert proc.stdout == ""
    return line


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """An inventory like inventory/sim whose lab does not answer (a closed loopback port)."""
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "artifacts").mkdir()
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}})
    )
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (inventory / "artifacts" / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    return inventory


def group_vars(lab: Path, text: str) -> None:
    (lab / "group_vars" / "all" / "experiment.yml").write_text(text)


def test_the_lab_fixture_is_unreachable_so_reaching_it_would_show(lab: Path) -> None:
    """The proof the tests below rely on: a good create gets to the lab, and fails there."""
    proc = nuclab("create", "--name", "purple", "-q", "-i", str(lab), cwd=lab)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr


# --- nuclab export ----------------------------------------------------------------------------

EXPORT = ("export", "purple", "--start", "2025-09-20T00:00:00Z", "--end", "2025-09-20T01:00:00Z")


def export(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    url = f"http://127.0.0.1:{free_port()}"
    return nuclab(
        *EXPORT, "--prometheus-url", url, "-o", str(tmp_path / "ds"), *extra, cwd=tmp_path
    )


def assert_nothing_written(tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("step", ["nan", "inf", "-inf", "0", "-5", "0.0001"])
def test_export_step_not_a_positive_finite_number(tmp_path: Path, step: str) -> None:
    assert_refused(export(tmp_path, f"--step={step}"), "step", "finite number of seconds")
    assert_nothing_written(tmp_path)


def test_export_step_too_fine_for_the_window_names_the_query_limit(tmp_path: Path) -> None:
    proc = export(
        tmp_path, "--step", "0.001", "--start", "2025-09-20T00:00:00Z",
        "--end", "2025-09-21T00:00:00Z",
    )  # fmt: skip
    line = assert_refused(proc, "step", "0.001", f"at most {prom.MAX_QUERIES} queries")
    assert "this step needs 7855" in line
    assert_nothing_written(tmp_path)


def test_export_step_at_the_query_limit_is_allowed() -> None:
    day = 86_400_000
    least = prom.check_queries(0, 0, 1)  # one point: one query
    assert least == 1
    assert prom.check_queries(0, day, 79) == prom.MAX_QUERIES
    with pytest.raises(ValidationError):
        prom.check_queries(0, day, 78)


@pytest.mark.parametrize(
    "url", ["http://h:99999", "http://h:abc", "http://h:0", "ftp://h", "h:9090"]
)
def test_export_prometheus_url_with_a_bad_port_or_scheme(tmp_path: Path, url: str) -> None:
    proc = nuclab(*EXPORT, "--prometheus-url", url, "-o", str(tmp_path / "ds"), cwd=tmp_path)
    assert_refused(proc, "prometheus_url", repr(url), "port from 1 to 65535")
    assert_nothing_written(tmp_path)


def test_export_loki_url_with_a_bad_port(tmp_path: Path) -> None:
    proc = export(tmp_path, "--loki-url", "http://h:70000")
    assert_refused(proc, "loki_url", "'http://h:70000'")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("start", "end"), [("1e20", "2e20"), ("inf", "1"), ("nan", "1"), ("-1e15", "0")]
)
def test_export_window_beyond_what_a_time_can_be(tmp_path: Path, start: str, end: str) -> None:
    proc = nuclab(
        "export", "purple", "--prometheus-url", "http://127.0.0.1:1", f"--start={start}",
        f"--end={end}", "-o", str(tmp_path / "ds"), cwd=tmp_path,
    )  # fmt: skip
    assert_refused(proc, "--start", repr(start), "RFC 3339")
    assert_nothing_written(tmp_path)


def test_export_name_one_character_too_long(tmp_path: Path) -> None:
    name = "a" * (spec.NAME_MAX + 1)
    proc = nuclab(
        "export", name, "--prometheus-url", "http://127.0.0.1:1", "-o", str(tmp_path / "ds"),
        cwd=tmp_path,
    )  # fmt: skip
    assert_refused(proc, "experiment", f"1 to {spec.NAME_MAX} characters")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("flags", [["--workers", "x"], ["--colour"], ["--step"]])
def test_flags_argparse_refuses_are_one_line_too(tmp_path: Path, flags: list[str]) -> None:
    proc = export(tmp_path, *flags)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith(("nuclab export: error: ", "nuclab: error: "))
    assert proc.stderr.strip().endswith("--help)")
    assert_nothing_written(tmp_path)


# --- nuclab report ----------------------------------------------------------------------------


def dataset(tmp_path: Path, manifest: object) -> Path:
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        ({"experiment": "x", "metrics": []}, "manifest.json metrics"),
        (
            {"experiment": "x", "metrics": {"cpu": "metrics/cpu.parquet"}},
            "manifest.json metrics.cpu",
        ),
        (
            {"experiment": "x", "metrics": {"cpu": {"file": "/etc/passwd"}}},
            "manifest.json metrics.cpu",
        ),
        ({"metrics": {"cpu": {"file": "../d/cpu.parquet"}}}, "manifest.json metrics.cpu"),
        ({"experiment": "x", "nodes": {"a": 1}}, "manifest.json nodes"),
        ({"experiment": "x", "window": "today"}, "manifest.json window"),
        ([1, 2], "manifest.json"),
    ],
)
def test_report_on_a_manifest_nuclab_did_not_write(
    tmp_path: Path, manifest: object, field: str
) -> None:
    folder = dataset(tmp_path, manifest)
    proc = nuclab("report", str(folder), cwd=tmp_path)
    assert_refused(proc, f"dataset {str(folder)!r}: {field}")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]


def test_report_into_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    folder = dataset(tmp_path, {"experiment": "x", "metrics": {}})
    missing = tmp_path / "missing" / "x.html"
    proc = nuclab("report", str(folder), "-o", str(missing), cwd=tmp_path)
    assert_refused(proc, "output", repr(str(missing)), "a folder that exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]


# --- nuclab create, scale, delete ------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "field", "shown"),
    [
        (["--image", "a:b:c"], "image", "'a:b:c'"),
        (["--image", "Localhost/Peer"], "image", "[registry[:port]/]path[:tag][@digest]"),
        (["--label", "role=server"], "node_labels.role", "field role (--role)"),
        (["--timeout", "-5"], "--timeout", "'-5'"),
        (["--timeout", "0"], "--timeout", ">= 1"),
        (["--timeout", "5m"], "--timeout", "(seconds)"),
        (["--param", "blob=" + "v" * 100_000], "params.blob", "100000 characters"),
        (["--name", "a" * (spec.NAME_MAX + 1)], "name", f"1 to {spec.NAME_MAX} characters"),
    ],
    ids=["image-two-tags", "image-upper-case", "second-role-label", "timeout-negative",
         "timeout-zero", "timeout-unit", "param-100kB", "name-too-long"],
)  # fmt: skip
def test_create_refuses_before_anything_is_applied(
    lab: Path, flags: list[str], field: str, shown: str
) -> None:
    argv = ["create", "--name", "purple", *flags, "-q", "-i", str(lab)]
    assert_refused(nuclab(*argv, cwd=lab), field, shown)


def test_create_refuses_a_megabyte_param_in_a_spec_file(lab: Path, tmp_path: Path) -> None:
    spec_file = tmp_path / "big.yml"
    spec_file.write_text(
        yaml.safe_dump({"experiment": {"name": "big", "params": {"blob": "v" * 1_048_576}}})
    )
    proc = nuclab("create", "-f", str(spec_file), "-q", "-i", str(lab), cwd=lab)
    line = assert_refused(proc, "params.blob", f"at most {spec.PARAM_VALUE_MAX} characters")
    assert len(line) < 400  # the value is shown by its start and length, not in full


@pytest.mark.parametrize(
    ("text", "field", "shown"),
    [
        (None, "--matrix", "a readable matrix file (No such file or directory)"),
        ("matrix: [\n", "--matrix", "valid YAML (while parsing"),
        ("zones: [zone-a]\n", "--matrix", "a YAML list of matrix entries, or a mapping"),
        ("- {from: zone-a, to: zone-b, delay: 20}\n- {from: zone-a, to: zone-c, loss: 150}\n",
         "matrix[1].loss", "150 is not allowed; a number >= 0 and <= 100"),
        ("matrix:\n  - {from: zone-a, to: zone-b, delay: 20}\n"
         "  - {from: zone-b, to: zone-a, delay: 5}\n",
         "matrix[1]", "one entry per directed link: matrix[0] sets zone-b -> zone-a"),
    ],
    ids=["missing", "bad-yaml", "no-matrix-key", "loss-150", "both-ways-twice"],
)  # fmt: skip
def test_create_refuses_a_bad_matrix_file_naming_the_flag_or_the_entry(
    lab: Path, tmp_path: Path, text: str | None, field: str, shown: str
) -> None:
    matrix_file = tmp_path / "matrix.yml"
    if text is not None:
        matrix_file.write_text(text)
    proc = nuclab("create", "--name", "purple", "--matrix", str(matrix_file), "-q", "-i",
                  str(lab), cwd=lab)  # fmt: skip
    line = assert_refused(proc, field, shown)
    if field == "--matrix":
        assert repr(str(matrix_file)) in line


@pytest.mark.parametrize("command", [["scale", "purple", "3"], ["delete", "purple"]])
def test_scale_and_delete_refuse_a_negative_timeout_first(lab: Path, command: list[str]) -> None:
    proc = nuclab(*command, "--timeout", "-5", "-q", "-i", str(lab), cwd=lab)
    assert_refused(proc, "--timeout", "'-5'")


@pytest.mark.parametrize(
    ("text", "field", "shown"),
    [
        ("experiment_wait_timeout: 5m\n", "experiment_wait_timeout", "'5m'"),
        ("experiment_wait_timeout: -1\n", "experiment_wait_timeout", ">= 1"),
        ("experiment_defaults: x\n", "experiment_defaults", "a mapping"),
        ("experiment_defaults: {peers: lots}\n", "experiment_defaults.peers", "'lots'"),
        ("experiment_defaults: {colour: red}\n", "experiment_defaults.colour", "unknown field"),
        ("experiment_chart_values: [1]\n", "experiment_chart_values", "a mapping"),
    ],
)
@pytest.mark.parametrize("via", [[], ["--via-playbook"]], ids=["direct", "via-playbook"])
def test_create_refuses_inventory_settings_before_anything_is_applied(
    lab: Path, text: str, field: str, shown: str, via: list[str]
) -> None:
    group_vars(lab, text)
    proc = nuclab("create", "--name", "purple", "-q", "-i", str(lab), *via, cwd=lab)
    assert_refused(proc, field, shown)


def test_create_names_a_group_vars_file_that_is_not_yaml(lab: Path) -> None:
    group_vars(lab, "experiment_defaults: [peers\n")
    proc = nuclab("create", "--name", "purple", "-q", "-i", str(lab), cwd=lab)
    path = lab / "group_vars" / "all" / "experiment.yml"
    assert_refused(proc, str(path), "not valid YAML", "line 2, column 1")


# --- anything unexpected ----------------------------------------------------------------------


def test_an_unexpected_error_is_one_line_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    def bug(_args: object) -> int:
        raise KeyError("peers")

    monkeypatch.setattr(report_command, "_run", bug)
    assert cli.main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "nuclab: error: unexpected KeyError: 'peers' (a bug in nuclab: re-run with --debug to "
        "see the traceback)"
    ]


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_lets_the_traceback_through(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    def bug(_args: object) -> int:
        raise KeyError("peers")

    monkeypatch.setattr(report_command, "_run", bug)
    argv = ["report", str(tmp_path)]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(KeyError):
        cli.main(argv)


# --- nuclab rerun -----------------------------------------------------------------------------


def a_dataset(tmp_path: Path) -> Path:
    """An export's folder: a manifest with the run's spec and no files."""
    data = tmp_path / "purple-ds"
    data.mkdir()
    values = spec.to_values(spec.parse({"name": "purple"}, create=True))
    manifest = {"experiment": "purple", "spec": values, "chart": {"version": "0.1.8"}, "files": []}
    (data / "manifest.json").write_text(json.dumps(manifest))
    return data


@pytest.mark.parametrize(
    ("flags", "field", "shown"),
    [
        (("--name", "Bad_Name"), "name", "'Bad_Name'"),
        (("--name", "x" * 60), "name", "x" * 60),
        (("--timeout", "-5"), "--timeout", "'-5'"),
    ],
)
def test_rerun_refuses_before_reading_the_lab(
    tmp_path: Path, lab: Path, flags: tuple[str, ...], field: str, shown: str
) -> None:
    proc = nuclab("rerun", str(a_dataset(tmp_path)), *flags, "-i", str(lab), cwd=tmp_path)
    assert_refused(proc, field, shown)


def test_rerun_of_a_folder_that_is_no_dataset_is_one_line(tmp_path: Path, lab: Path) -> None:
    proc = nuclab("rerun", str(tmp_path), "-i", str(lab), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [
        f"nuclab: error: dataset {str(tmp_path)!r}: no manifest.json (not an export)"
    ]


# --- nuclab campaign --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "shown"),
    [
        ({"name": "bw", "experiment": {}, "duration": "30s", "grid": {"peerz": [1, 2]}},
         "campaign.grid.peerz", "[1, 2]"),
        ({"name": "bw", "experiment": {"ram": 2}, "duration": "30s"},
         "campaign.experiment.ram (the base spec)", "2"),
        ({"name": "bw", "experiment": {}, "duration": "-1s"}, "campaign.duration", "'-1s'"),
        ({"name": "bw", "experiment": {}}, "campaign.duration", "required"),
    ],
)  # fmt: skip
def test_campaign_refuses_a_bad_file_before_reading_the_lab(
    tmp_path: Path, lab: Path, body: dict, field: str, shown: str
) -> None:
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"campaign": body}))
    proc = nuclab("campaign", "run", str(path), "-i", str(lab), cwd=tmp_path)
    assert_refused(proc, field, shown)
    assert not (tmp_path / "datasets").exists(), "nothing was written"


def test_campaign_status_without_a_run_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"campaign": {"name": "bw", "experiment": {}, "duration": 5}}))
    proc = nuclab("campaign", "status", str(path), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [
        f"nuclab: error: no campaign in {str(tmp_path / 'datasets' / 'bw')!r} (no campaign.json)"
    ]
