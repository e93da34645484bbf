"""nuclab.spec's ``matrix`` (issue 13): zone-to-zone links, checked and normalized, each bad
entry named down to its key, and carried at the chart's ``network.matrix`` both ways."""

from __future__ import annotations

from typing import Any

import pytest

from nuclab import experiments, spec
from nuclab.errors import ValidationError

A_B = {"from": "zone-a", "to": "zone-b", "delay": 20}


def matrix(*entries: Any) -> list[dict[str, Any]]:
    return spec.parse({"name": "purple", "matrix": list(entries)}).matrix


def rejected(value: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        spec.parse({"name": "purple", "matrix": value})
    return info.value


def test_no_matrix_by_default() -> None:
    parsed = spec.parse({"name": "purple"})
    assert parsed.matrix == []
    assert spec.to_values(parsed)["network"]["matrix"] == []


def test_entries_get_every_key_and_numbers() -> None:
    # strings as extra vars give them; floats that are whole become ints, as elsewhere
    got = matrix(
        {"from": "zone-a", "to": "zone-b", "delay": "20", "jitter": 2.0, "rate": "100"},
        {"from": "zone-a", "to": "zone-a", "loss": 0.5},
        {"from": "zone-b", "to": "zone-c", "rate": 0.1, "symmetric": "false"},
    )
    assert got == [
        {"from": "zone-a", "to": "zone-b", "delay": 20, "jitter": 2, "loss": 0, "rate": 100,
         "symmetric": True},
        {"from": "zone-a", "to": "zone-a", "delay": 0, "jitter": 0, "loss": 0.5, "rate": None,
         "symmetric": True},
        {"from": "zone-b", "to": "zone-c", "delay": 0, "jitter": 0, "loss": 0, "rate": 0.1,
         "symmetric": False},
    ]  # fmt: skip
    assert [list(entry) for entry in got] == [list(spec.MATRIX_KEYS)] * 3
    assert all(type(entry["delay"]) is int for entry in got)


def test_limits_are_allowed() -> None:
    got = matrix(
        {"from": "a", "to": "b", "delay": 60000, "jitter": 60000, "loss": 100, "rate": 100000},
        {"from": "c", "to": "d", "delay": 0.001, "rate": None},
    )
    assert got[0]["rate"] == 100000
    assert got[1]["delay"] == 0.001


def test_zones_are_named_as_the_zones_field_names_them() -> None:
    assert matrix({**A_B, "from": 1})[0]["from"] == "1"
    assert matrix({**A_B, "from": "Zone_A.1"})[0]["from"] == "Zone_A.1"


def test_a_symmetric_entry_gives_both_ways_and_a_one_way_entry_one() -> None:
    links = spec.directed_matrix(
        matrix(A_B, {"from": "zone-a", "to": "zone-c", "loss": 1, "symmetric": False})
    )
    assert set(links) == {("zone-a", "zone-b"), ("zone-b", "zone-a"), ("zone-a", "zone-c")}
    # a one-way entry each way is two links, not a duplicate
    both = matrix({**A_B, "symmetric": False}, {**A_B, "from": "zone-b", "to": "zone-a",
                                                "delay": 5, "symmetric": False})  # fmt: skip
    assert [entry["delay"] for entry in both] == [20, 5]


@pytest.mark.parametrize(
    ("value", "field", "shown", "allowed"),
    [
        ("zone-a", "matrix", "zone-a", "a list of entries"),
        ({"from": "a"}, "matrix", {"from": "a"}, "a list of entries"),
        (None, "matrix", None, "a list of entries"),
        ([["zone-a", "zone-b"]], "matrix[0]", ["zone-a", "zone-b"], "a mapping with the keys"),
        ([A_B, {**A_B, "to": "zone-c", "lat": 5}], "matrix[1].lat", 5,
         "unknown key; the keys are from, to, delay, jitter, loss, rate, symmetric"),
        ([{"to": "zone-b", "delay": 1}], "matrix[0].from", None, "(required)"),
        ([{"from": "zone-a", "delay": 1}], "matrix[0].to", None, "(required)"),
        ([{**A_B, "from": ""}], "matrix[0].from", "", "a zone name"),
        ([{**A_B, "to": "zone b"}], "matrix[0].to", "zone b", "a zone name"),
        ([{**A_B, "to": "-zone"}], "matrix[0].to", "-zone", "a zone name"),
        ([{**A_B, "to": "z" * 64}], "matrix[0].to", "z" * 64, "a zone name"),
        ([{**A_B, "to": True}], "matrix[0].to", True, "a zone name"),
        ([{**A_B, "to": ["zone-b"]}], "matrix[0].to", ["zone-b"], "a zone name"),
        ([{**A_B, "delay": -1}], "matrix[0].delay", -1, "<= 60000 in steps of 0.001 (ms)"),
        ([{**A_B, "delay": 60001}], "matrix[0].delay", 60001, "(ms)"),
        ([{**A_B, "delay": 0.0001}], "matrix[0].delay", 0.0001, "steps of 0.001"),
        ([{**A_B, "delay": "slow"}], "matrix[0].delay", "slow", "(ms)"),
        ([{**A_B, "delay": True}], "matrix[0].delay", True, "(ms)"),
        ([{**A_B, "delay": float("nan")}], "matrix[0].delay", "nan", "(ms)"),
        ([{**A_B, "delay": "inf"}], "matrix[0].delay", "inf", "(ms)"),
        ([{**A_B, "jitter": 60001}], "matrix[0].jitter", 60001, "(ms)"),
        ([{**A_B, "delay": 0, "loss": 1, "jitter": 2}], "matrix[0].jitter", 2,
         "0 unless delay is > 0"),
        ([A_B, {**A_B, "to": "zone-c", "loss": 150}], "matrix[1].loss", 150,
         "a number >= 0 and <= 100 in steps of 0.001 (percent)"),
        ([{**A_B, "loss": -0.5}], "matrix[0].loss", -0.5, "(percent)"),
        ([{**A_B, "rate": 0.05}], "matrix[0].rate", 0.05,
         "a number >= 0.1 and <= 100000 in steps of 0.001 (Mbit/s), or null for unlimited; "
         "below 0.1 Mbit/s HTB cannot send a full-size (1500 B) packet per about 100 ms"),
        ([{**A_B, "rate": 0}], "matrix[0].rate", 0, "null for unlimited"),
        ([{**A_B, "rate": 100001}], "matrix[0].rate", 100001, "(Mbit/s)"),
        ([{**A_B, "symmetric": "yes"}], "matrix[0].symmetric", "yes", "true or false"),
        ([{**A_B, "symmetric": None}], "matrix[0].symmetric", None, "true or false"),
        ([{"from": "zone-a", "to": "zone-b"}], "matrix[0]", {"from": "zone-a", "to": "zone-b"},
         "an entry that sets delay, loss or rate (this one changes nothing)"),
        ([{"from": "zone-a", "to": "zone-b", "delay": 0, "loss": 0, "rate": None}], "matrix[0]",
         {"from": "zone-a", "to": "zone-b", "delay": 0, "loss": 0, "rate": None},
         "changes nothing"),
    ],
)  # fmt: skip
def test_bad_matrices_name_the_entry_and_key(
    value: object, field: str, shown: object, allowed: str
) -> None:
    error = rejected(value)
    assert error.field == field, str(error)
    if shown in ("nan", "inf"):
        assert str(error.value) == shown
    else:
        assert error.value == shown
    assert allowed in error.allowed, error.allowed


@pytest.mark.parametrize(
    ("entries", "link", "first"),
    [
        # the same entry twice
        ([A_B, A_B], "zone-a -> zone-b", "matrix[0]"),
        # the way back of a symmetric entry, written as one of its own
        ([A_B, {**A_B, "from": "zone-b", "to": "zone-a", "symmetric": False}],
         "zone-b -> zone-a", "matrix[0]"),
        # a symmetric entry each way
        ([A_B, {**A_B, "from": "zone-b", "to": "zone-a"}], "zone-b -> zone-a", "matrix[0]"),
        # a one-way entry, then a symmetric one that mirrors onto it
        ([{**A_B, "from": "zone-b", "to": "zone-a", "symmetric": False},
          {"from": "zone-c", "to": "zone-d", "loss": 1}, A_B], "zone-b -> zone-a", "matrix[0]"),
        # within a zone, twice
        ([{"from": "z", "to": "z", "loss": 1}, {"from": "z", "to": "z", "delay": 1,
                                                 "symmetric": False}], "z -> z", "matrix[0]"),
    ],
)  # fmt: skip
def test_a_directed_link_is_set_by_one_entry_only(
    entries: list[dict[str, Any]], link: str, first: str
) -> None:
    error = rejected(entries)
    second = f"matrix[{len(entries) - 1}]"  # the entry that repeats a link is named
    assert error.field == second, str(error)
    assert error.value == link
    assert error.allowed.startswith(f"one entry per directed link: {first} sets {link}")


def test_errors_read_as_one_line() -> None:
    error = rejected([A_B, {**A_B, "to": "zone-c", "loss": 150}])
    assert str(error) == (
        "matrix[1].loss: 150 is not allowed; a number >= 0 and <= 100 in steps of 0.001 (percent)"
    )


def test_the_matrix_round_trips_through_the_chart_values() -> None:
    parsed = spec.parse(
        {
            "name": "purple",
            "matrix": [
                {"from": "zone-a", "to": "zone-b", "delay": 20.5, "jitter": 2, "rate": 50},
                {"from": "zone-b", "to": "zone-c", "loss": "0.25", "symmetric": False},
            ],
        }
    )
    values = spec.to_values(parsed)
    assert values["network"]["matrix"] == parsed.matrix
    assert values["network"]["matrix"] is not parsed.matrix  # a copy: the spec stays frozen
    fields = spec.from_values(values)
    assert fields["matrix"] == parsed.matrix
    assert spec.parse(fields) == parsed


def test_a_release_without_a_matrix_reads_back_as_none_given() -> None:
    values = spec.to_values(spec.parse({"name": "purple"}))
    del values["network"]["matrix"]  # a release of a chart before the matrix
    assert "matrix" not in spec.from_values(values)
    assert spec.parse(spec.from_values(values)).matrix == []


def test_a_spec_replaces_the_running_matrix_as_a_whole() -> None:
    base = {"matrix": [A_B]}
    assert spec.parse({"name": "purple"}, base=base).matrix[0]["delay"] == 20
    assert spec.parse({"name": "purple", "matrix": []}, base=base).matrix == []
    lab = {"matrix": [{**A_B, "loss": 1}]}
    assert spec.parse({"name": "purple"}, defaults=lab).matrix[0]["loss"] == 1


def test_unknown_zones_are_the_ones_no_node_carries() -> None:
    checked = matrix(A_B, {"from": "zone-c", "to": "zone-a", "loss": 1, "symmetric": False})
    assert spec.unknown_zones(checked, {"zone-a", "zone-b", "zone-c"}) == []
    assert spec.unknown_zones(checked, {"zone-a"}) == ["zone-b", "zone-c"]
    assert spec.unknown_zones(checked, frozenset()) == ["zone-a", "zone-b", "zone-c"]
    assert spec.unknown_zones([], {"zone-a"}) == []
    assert spec.unknown_zones(checked, ["zone-a", "zone-b"]) == ["zone-c"]  # any collection


def _node(name: str, zone: str, netem: bool) -> dict:
    labels = {"nuclab.io/role": "worker", "topology.kubernetes.io/zone": zone}
    if not netem:
        labels["nuclab.io/netem"] = "false"
    return {"metadata": {"name": name, "labels": labels}}


LAB = [_node("nuc-2", "zone-a", False), _node("nuc-4", "zone-b", False), _node("nuc-5", "zone-b", True)]  # fmt: skip  # noqa: E501


def _checked(matrix: list[dict]) -> dict:
    return spec.parse({"name": "m", "matrix": matrix}).as_dict()


def test_a_matrix_naming_a_zone_no_node_carries_is_refused_with_the_labs_zones() -> None:
    refusal = experiments.network_refusal(
        _checked([{"from": "zone-a", "to": "zone-c", "rate": 2}]), LAB
    )
    assert refusal == (
        "matrix",
        ["zone-c"],
        "zones of this lab's nodes (topology.kubernetes.io/zone): zone-a, zone-b; no node is in "
        "zone-c",
    )


def test_a_matrix_delay_needs_netem_where_the_peers_may_run_and_a_rate_does_not() -> None:
    field, name, reason = experiments.network_refusal(
        _checked([{"from": "zone-a", "to": "zone-b", "rate": 2, "delay": 20}]), LAB
    )
    assert (field, name) == ("latency/jitter/loss", "m")
    assert reason.startswith("matrix[0].delay 20 needs netem (sch_netem)")
    assert "nuc-2, nuc-4" in reason
    assert (
        experiments.network_refusal(_checked([{"from": "zone-a", "to": "zone-b", "rate": 2}]), LAB)
        is None
    )
