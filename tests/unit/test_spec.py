"""nuclab.spec: every field's units, defaults and limits, and the mapping to chart values."""

from __future__ import annotations

import dataclasses

import pytest

from nuclab import spec
from nuclab.errors import ValidationError

REFERENCE = {
    "name": "purple",
    "peers": 5,
    "msg_size": 1440,
    "msg_rate": 2000,
    "cpu": 0.05,
    "ram": 16,
    "downlink_bw": 16,
    "uplink_bw": 16,
    "connect_to": 5,
}


def rejected(raw: dict, field: str, *, create: bool = True, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        spec.parse(raw, create=create, **kwargs)
    assert info.value.field == field, str(info.value)
    return info.value


def test_reference_experiment_parses_with_its_units() -> None:
    parsed = spec.parse(REFERENCE)
    assert parsed.peers == 5
    assert parsed.cpu == 0.05
    assert parsed.fullname == "nuclab-exp-purple"


def test_defaults_are_the_reference_lab() -> None:
    parsed = spec.parse({"name": "purple"})
    assert {key: getattr(parsed, key) for key in REFERENCE} == REFERENCE


def test_strings_from_extra_vars_are_numbers() -> None:
    parsed = spec.parse({"name": "a", "peers": "7", "cpu": "0.25", "uplink_bw": "0.5"})
    assert (parsed.peers, parsed.cpu, parsed.uplink_bw) == (7, 0.25, 0.5)


@pytest.mark.parametrize(
    "name",
    ["Purple", "", "-purple", "purple-", "pur_ple", "pur.ple", "a" * (spec.NAME_MAX + 1), None, 5],
)
def test_bad_names_are_rejected_with_the_rule(name: object) -> None:
    error = rejected({**REFERENCE, "name": name}, "name")
    assert "DNS-1123" in str(error)
    assert str(spec.NAME_MAX) in str(error)


def test_longest_name_leaves_room_for_the_revision_label() -> None:
    name = "a" * spec.NAME_MAX
    sts = spec.fullname(name)
    # controller-revision-hash = <statefulset>-<hash up to 10 chars> must be a 63-char label
    assert len(f"{sts}-{'9' * 10}") == 63
    assert len(f"{sts}-headless") <= 63
    assert spec.parse({**REFERENCE, "name": name}).name == name


def test_missing_name_is_reported() -> None:
    raw = dict(REFERENCE)
    del raw["name"]
    assert "required" in str(rejected(raw, "name"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("peers", 0),
        ("peers", -1),
        ("peers", spec.PEERS_MAX + 1),
        ("peers", 2.5),
        ("peers", True),
        ("peers", "five"),
        ("cpu", 0),
        ("cpu", -0.1),
        ("cpu", 0.0005),
        ("cpu", 65),
        ("cpu", "nan"),
        ("ram", spec.RAM_MIN_MIB - 1),
        ("ram", 0),
        ("ram", 16.5),
        ("uplink_bw", 0),
        ("downlink_bw", -16),
        ("downlink_bw", 0.0001),
        ("connect_to", -1),
        ("msg_size", 0),
        ("msg_rate", 0),
        ("loss", 101),
        ("latency", -1),
    ],
)
def test_out_of_range_values_name_field_value_and_range(field: str, value: object) -> None:
    error = rejected({**REFERENCE, field: value}, field)
    message = str(error)
    assert message.startswith(f"{field}: {value!r}")
    assert "<=" in message  # the allowed range is spelled out


def test_zero_peers_pauses_an_existing_experiment_only() -> None:
    assert "0 pauses" not in str(rejected({**REFERENCE, "peers": 0}, "peers"))
    assert spec.parse({**REFERENCE, "peers": 0}, create=False).peers == 0
    assert "0 pauses" in str(rejected({**REFERENCE, "peers": -1}, "peers", create=False))


def test_unknown_keys_are_rejected_with_the_known_ones() -> None:
    error = rejected({**REFERENCE, "pers": 5}, "pers")
    assert "unknown field" in str(error)
    assert "peers" in str(error)


def test_jitter_needs_latency() -> None:
    rejected({**REFERENCE, "jitter": 5}, "jitter")
    parsed = spec.parse({**REFERENCE, "latency": 20, "jitter": 5, "loss": 0.5})
    assert parsed.netem


def test_bandwidth_may_be_unlimited() -> None:
    parsed = spec.parse({**REFERENCE, "uplink_bw": None})
    assert parsed.uplink_bw is None
    assert spec.to_values(parsed)["network"]["uplink"] is None


def test_missing_fields_come_from_base_then_defaults() -> None:
    lab_defaults = {"cpu": 0.1, "ram": 32}
    base = {"name": "purple", "peers": 5, "msg_size": 100, "cpu": 0.2}
    parsed = spec.parse({"name": "purple", "peers": 10}, defaults=lab_defaults, base=base)
    assert (parsed.peers, parsed.msg_size, parsed.cpu, parsed.ram) == (10, 100, 0.2, 32)


def test_lab_defaults_are_checked_too() -> None:
    rejected({"name": "a"}, "cpu", defaults={"cpu": 0})
    rejected({"name": "a"}, "defaults.name", defaults={"name": "b"})
    rejected({"name": "a"}, "typo", defaults={"typo": 1})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("role", "master"),
        ("zones", "zone a"),
        ("zones", [{"a": 1}]),
        ("node_labels", {"GPU": "x"}),
        ("node_labels", {"gpu": "a b"}),
        ("params", {"Bad": 1}),
        ("params", {"ok": [1]}),
        ("params", "x=1"),
        ("image", "Not An Image"),
        ("command", "nuclab peer"),
        ("probe", "yes"),
        ("probe", 1),
        ("probe_max_targets", -1),
        ("probe_max_targets", 2.5),
        ("probe_max_targets", spec.PEERS_MAX + 1),
    ],
)
def test_other_fields_are_checked(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        spec.parse({**REFERENCE, field: value})
    assert info.value.field.split(".")[0] == field


def test_values_round_trip_through_the_chart_values() -> None:
    raw = {
        **REFERENCE,
        "latency": 20,
        "jitter": 2.5,
        "loss": 1,
        "zones": ["zone-a"],
        "node_labels": {"gpu": "nvidia"},
        "params": {"topic": "t1", "fanout": 3, "flag": True},
        "image": "registry.local:5000/peer:1.2",
        "command": ["/peer"],
        "args": ["--verbose"],
        "uplink_bw": None,
        "probe": True,
        "probe_max_targets": 0,
    }
    parsed = spec.parse(raw)
    values = spec.to_values(parsed)
    assert values["image"] == {"repository": "registry.local:5000/peer", "tag": "1.2"}
    assert values["experiment"]["params"] == {"topic": "t1", "fanout": "3", "flag": "true"}
    assert values["probe"] == {"enabled": True, "maxTargets": 0}
    assert spec.parse(spec.from_values(values)) == parsed


def test_the_probe_is_off_by_default_and_bounded_to_16_targets() -> None:
    values = spec.to_values(spec.parse({"name": "purple"}))
    assert values["probe"] == {"enabled": False, "maxTargets": 16}
    # -e probe=true -e probe_max_targets=8 arrive as strings
    parsed = spec.parse({"name": "purple", "probe": "true", "probe_max_targets": "8"})
    assert (parsed.probe, parsed.probe_max_targets) == (True, 8)


def test_effective_connect_to_means_all_when_larger() -> None:
    assert spec.effective_connect_to(5, 5) == 4
    assert spec.effective_connect_to(5, 20) == 5
    assert spec.effective_connect_to(5, 1) == 0
    assert spec.effective_connect_to(0, 10) == 0


def test_split_image_keeps_registry_ports_and_digests() -> None:
    assert spec.split_image("localhost:5000/a/b") == ("localhost:5000/a/b", "latest")
    assert spec.split_image("a/b:1") == ("a/b", "1")
    assert spec.split_image("a/b@sha256:00") == ("a/b@sha256:00", "")


def test_health_probes_are_the_peers_and_off_for_a_workload_of_ones_own() -> None:
    peer = spec.to_values(spec.parse({"name": "purple", "peers": 1}))
    assert peer["probes"] == {"enabled": True}
    own = spec.to_values(spec.parse({"name": "own", "peers": 1, "command": ["python3", "-c"]}))
    assert own["probes"] == {"enabled": False}


def test_the_checks_and_the_spec_class_follow_the_table() -> None:
    assert tuple(field.name for field in dataclasses.fields(spec.ExperimentSpec)) == spec.FIELDS
    for row in spec.FIELD_TABLE:
        if row.number is not None:
            assert spec.NUMBERS[row.name] is row.number
            error = rejected({**REFERENCE, row.name: "x"}, row.name)
            assert error.allowed == row.number.allowed()
    assert set(spec.DEFAULTS) == set(spec.FIELDS) - {"name"}
