"""The experiment spec: the one place that knows an experiment's fields, units, defaults, limits.

A spec is what a researcher writes (``-e name=purple -e peers=5``, ``nuclab create --name purple
--peers 5``, or a file ``experiments/purple.yml``). ``parse`` checks every field and returns an
``ExperimentSpec``; ``to_values`` turns it into the values of ``charts/experiment`` and
``from_values`` reads a spec back from a release's values (so that ``-e peers=10`` scales an
experiment without resetting its other fields). Bad input raises ``ValidationError(field,
value, allowed)`` before anything touches a cluster.

Units are the ones users think in: CPU in cores, memory in MiB, bandwidth in Mbit/s, message
size in bytes, message interval ("rate", as the reference lab called it) in milliseconds,
latency and jitter in ms, loss in percent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from nuclab.errors import ValidationError

# Release, StatefulSet and Service names are "nuclab-exp-<name>". A StatefulSet's pods carry the
# label controller-revision-hash=<statefulset>-<hash of up to 10 characters>, and a label value
# is at most 63 characters: so the StatefulSet name has at most 52, and the name at most 41.
FULLNAME_PREFIX = "nuclab-exp-"
STATEFULSET_NAME_MAX = 63 - len("-") - 10
NAME_MAX = STATEFULSET_NAME_MAX - len(FULLNAME_PREFIX)
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Below 6 MiB container runtimes refuse to start a container (Docker's documented minimum is
# 6 MiB; runc's own init needs about that much before the workload runs).
RAM_MIN_MIB = 6
PEERS_MAX = 5000
ROLES = ("server", "client", "worker")
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
LABEL_KEY_RE = re.compile(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
PARAM_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
PARAM_KEY_MAX = 50
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")
DEFAULT_IMAGE = "localhost/nuclab/tools:0.1.0"
DEFAULT_COMMAND: tuple[str, ...] = ("nuclab", "peer")


@dataclass(frozen=True)
class Number:
    """A numeric field: its unit, bounds and step (the smallest difference that matters)."""

    name: str
    unit: str
    minimum: float
    maximum: float
    exclusive_minimum: bool = False
    integer: bool = True
    step: float = 1.0
    optional: bool = False
    help: str = ""

    def allowed(self) -> str:
        low = f"> {_fmt(self.minimum)}" if self.exclusive_minimum else f">= {_fmt(self.minimum)}"
        kind = "an integer" if self.integer else "a number"
        text = f"{kind} {low} and <= {_fmt(self.maximum)}"
        if not self.integer:
            text += f" in steps of {_fmt(self.step)}"
        if self.unit:
            text += f" ({self.unit})"
        if self.optional:
            text += ", or null for none"
        return text


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


NUMBERS: dict[str, Number] = {
    number.name: number
    for number in (
        Number("peers", "peers", 1, PEERS_MAX, help="number of peers (pods); 0 pauses on scale"),
        Number("msg_size", "bytes", 1, 16 * 1024 * 1024, help="size of each message"),
        Number("msg_rate", "ms between messages", 1, 3_600_000, help="message interval"),
        Number("connect_to", "peers", 0, PEERS_MAX, help="peers each peer connects to"),
        Number("cpu", "cores", 0, 64, exclusive_minimum=True, integer=False, step=0.001),
        Number("ram", "MiB", RAM_MIN_MIB, 65536, help="memory limit"),
        Number("uplink_bw", "Mbit/s", 0, 100_000, True, False, 0.001, optional=True, help="egress"),
        Number(
            "downlink_bw", "Mbit/s", 0, 100_000, True, False, 0.001, optional=True, help="ingress"
        ),
        Number("latency", "ms", 0, 60_000, integer=False, step=0.001, help="netem delay"),
        Number("jitter", "ms", 0, 60_000, integer=False, step=0.001, help="netem jitter"),
        Number("loss", "percent", 0, 100, integer=False, step=0.001, help="netem loss"),
    )
}

OTHER_FIELDS = ("name", "role", "zones", "node_labels", "params", "image", "command", "args")
FIELDS: tuple[str, ...] = ("name", *NUMBERS, *OTHER_FIELDS[1:])

# The reference lab's experiment: 5 peers, 1440 B every 2000 ms, 5% of a core, 16 MiB, 16/16 Mbit/s.
DEFAULTS: dict[str, Any] = {
    "peers": 5,
    "msg_size": 1440,
    "msg_rate": 2000,
    "connect_to": 5,
    "cpu": 0.05,
    "ram": 16,
    "uplink_bw": 16,
    "downlink_bw": 16,
    "latency": 0,
    "jitter": 0,
    "loss": 0,
    "role": "worker",
    "zones": [],
    "node_labels": {},
    "params": {},
    "image": DEFAULT_IMAGE,
    "command": list(DEFAULT_COMMAND),
    "args": [],
}


@dataclass(frozen=True)
class ExperimentSpec:
    """A checked experiment: every field present, in the units above."""

    name: str
    peers: int
    msg_size: int
    msg_rate: int
    connect_to: int
    cpu: float
    ram: int
    uplink_bw: float | None
    downlink_bw: float | None
    latency: float
    jitter: float
    loss: float
    role: str
    zones: list[str] = field(default_factory=list)
    node_labels: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    image: str = DEFAULT_IMAGE
    command: list[str] = field(default_factory=lambda: list(DEFAULT_COMMAND))
    args: list[str] = field(default_factory=list)

    @property
    def fullname(self) -> str:
        return fullname(self.name)

    @property
    def netem(self) -> bool:
        """Whether an init container with NET_ADMIN applies tc netem."""
        return bool(self.latency or self.jitter or self.loss)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fullname(name: str) -> str:
    """The release (and StatefulSet) name of an experiment: ``nuclab-exp-<name>``."""
    return FULLNAME_PREFIX + check_name(name)


def check_name(name: object) -> str:
    """A DNS-1123 label short enough for every object the chart creates."""
    allowed = (
        f"a DNS-1123 label: 1 to {NAME_MAX} characters of a-z, 0-9 and '-', "
        "starting and ending with a letter or digit"
    )
    if not isinstance(name, str) or not name:
        raise ValidationError("name", name, allowed)
    if len(name) > NAME_MAX or not NAME_RE.match(name):
        raise ValidationError("name", name, allowed)
    return name


def effective_connect_to(connect_to: int, peers: int) -> int:
    """How many peers a peer really connects to: a connect-to beyond the others means all."""
    return max(0, min(connect_to, peers - 1))


def _number(spec: Number, value: object, *, create: bool) -> int | float | None:
    if value is None and spec.optional:
        return None
    allowed = spec.allowed()
    if spec.name == "peers" and not create:
        allowed = allowed.replace(">= 1", ">= 0 (0 pauses the experiment)")
    parsed = _to_decimal(spec.name, value, allowed)
    low = Decimal(str(spec.minimum))
    if spec.name == "peers" and not create:
        low = Decimal(0)
    too_low = parsed <= low if spec.exclusive_minimum else parsed < low
    if too_low or parsed > Decimal(str(spec.maximum)):
        raise ValidationError(spec.name, value, allowed)
    if spec.integer:
        if parsed != parsed.to_integral_value():
            raise ValidationError(spec.name, value, allowed)
        return int(parsed)
    if parsed % Decimal(str(spec.step)) != 0:
        raise ValidationError(spec.name, value, allowed)
    result = float(parsed)
    return int(result) if result.is_integer() else result


def _to_decimal(name: str, value: object, allowed: str) -> Decimal:
    # bool is an int in Python, but "peers: true" is a mistake, not 1 peer.
    if isinstance(value, bool) or value is None:
        raise ValidationError(name, value, allowed)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(name, value, allowed)
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ValidationError(name, value, allowed) from exc
        if not parsed.is_finite():
            raise ValidationError(name, value, allowed)
        return parsed
    raise ValidationError(name, value, allowed)


def _string_list(name: str, value: object, pattern: re.Pattern[str] | None = None) -> list[str]:
    allowed = "a list of strings"
    if pattern is not None:
        allowed = f"a list of strings matching {pattern.pattern}"
    if isinstance(value, str) and name == "zones":
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise ValidationError(name, value, allowed)
    result: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ValidationError(name, value, allowed)
        text = str(item)
        if pattern is not None and (not text or not pattern.match(text) or len(text) > 63):
            raise ValidationError(name, value, allowed)
        result.append(text)
    return result


def _labels(value: object) -> dict[str, str]:
    allowed = (
        "a mapping of label keys (a-z, 0-9, '-', '_', '.'; selects nodes labelled "
        "nuclab.io/<key>) to label values (at most 63 characters)"
    )
    if not isinstance(value, Mapping):
        raise ValidationError("node_labels", value, allowed)
    result: dict[str, str] = {}
    for key, item in value.items():
        text = "" if item is None else str(item)
        if (
            not isinstance(key, str)
            or len(key) > 63
            or not LABEL_KEY_RE.match(key)
            or isinstance(item, dict | list)
            or len(text) > 63
            or not LABEL_VALUE_RE.match(text)
        ):
            raise ValidationError(f"node_labels.{key}", item, allowed)
        result[key] = text
    return result


def _params(value: object) -> dict[str, str]:
    allowed = (
        f"a mapping of keys (a lower-case letter, then a-z, 0-9, '_', at most {PARAM_KEY_MAX} "
        "characters) to strings, numbers or booleans"
    )
    if not isinstance(value, Mapping):
        raise ValidationError("params", value, allowed)
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or len(key) > PARAM_KEY_MAX or not PARAM_KEY_RE.match(key):
            raise ValidationError("params", key, allowed)
        if isinstance(item, dict | list) or item is None:
            raise ValidationError(f"params.{key}", item, allowed)
        result[key] = str(item).lower() if isinstance(item, bool) else str(item)
    return result


def _image(value: object) -> str:
    allowed = "an image reference such as localhost/nuclab/tools:0.1.0 (lower-case, no spaces)"
    if not isinstance(value, str) or not IMAGE_RE.match(value) or len(value) > 255:
        raise ValidationError("image", value, allowed)
    return value


def split_image(image: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repository, tag); a digest ``repo@sha256:...`` keeps the tag empty."""
    if "@" in image:
        return image, ""
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repository, tag


def parse(
    raw: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
    create: bool = True,
) -> ExperimentSpec:
    """Check ``raw`` and return the spec. Missing fields come from ``base`` (the experiment as
    it runs, when updating) then ``defaults`` (the lab's) then ``DEFAULTS``.

    ``create`` says whether the experiment is new: a new experiment needs at least one peer;
    an existing one may be scaled to 0 (paused).
    """
    for where, data in (("spec", raw), ("defaults", defaults or {}), ("base", base or {})):
        if not isinstance(data, Mapping):
            raise ValidationError(where, data, "a mapping of experiment fields")
        unknown = sorted(str(key) for key in data if key not in FIELDS)
        if unknown:
            raise ValidationError(
                unknown[0], data[unknown[0]], f"unknown field; the fields are {', '.join(FIELDS)}"
            )
        if where == "defaults" and "name" in data:
            raise ValidationError("defaults.name", data["name"], "no name: a name is per spec")

    merged: dict[str, Any] = {**DEFAULTS, **dict(defaults or {}), **dict(base or {}), **raw}
    if "name" not in merged:
        raise ValidationError("name", None, "a name is required")
    values: dict[str, Any] = {"name": check_name(merged["name"])}
    for name, number in NUMBERS.items():
        values[name] = _number(number, merged[name], create=create)
    role = merged["role"]
    if role not in ROLES:
        raise ValidationError("role", role, f"one of {', '.join(ROLES)}")
    values["role"] = role
    values["zones"] = _string_list("zones", merged["zones"], LABEL_VALUE_RE)
    values["node_labels"] = _labels(merged["node_labels"])
    values["params"] = _params(merged["params"])
    values["image"] = _image(merged["image"])
    values["command"] = _string_list("command", merged["command"])
    values["args"] = _string_list("args", merged["args"])
    if values["jitter"] and not values["latency"]:
        raise ValidationError("jitter", merged["jitter"], "0 unless latency is > 0")
    return ExperimentSpec(**values)


def to_values(spec: ExperimentSpec) -> dict[str, Any]:
    """The values of ``charts/experiment`` for a spec (the chart renders Kubernetes units)."""
    repository, tag = split_image(spec.image)
    return {
        "experiment": {
            "name": spec.name,
            "peers": spec.peers,
            "msgSize": spec.msg_size,
            "msgInterval": spec.msg_rate,
            "connectTo": spec.connect_to,
            "params": dict(spec.params),
        },
        "resources": {"cpu": spec.cpu, "memory": spec.ram},
        "network": {
            "uplink": spec.uplink_bw,
            "downlink": spec.downlink_bw,
            "latency": spec.latency,
            "jitter": spec.jitter,
            "loss": spec.loss,
        },
        "placement": {
            "role": spec.role,
            "zones": list(spec.zones),
            "nodeLabels": dict(spec.node_labels),
        },
        "image": {"repository": repository, "tag": tag},
        "command": list(spec.command),
        "args": list(spec.args),
    }


def from_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The spec fields a release was installed with (inverse of ``to_values``)."""
    experiment = values.get("experiment", {})
    resources = values.get("resources", {})
    network = values.get("network", {})
    placement = values.get("placement", {})
    image = values.get("image", {})
    pairs = {
        "name": experiment.get("name"),
        "peers": experiment.get("peers"),
        "msg_size": experiment.get("msgSize"),
        "msg_rate": experiment.get("msgInterval"),
        "connect_to": experiment.get("connectTo"),
        "params": experiment.get("params"),
        "cpu": resources.get("cpu"),
        "ram": resources.get("memory"),
        "latency": network.get("latency"),
        "jitter": network.get("jitter"),
        "loss": network.get("loss"),
        "role": placement.get("role"),
        "zones": placement.get("zones"),
        "node_labels": placement.get("nodeLabels"),
        "command": values.get("command"),
        "args": values.get("args"),
    }
    result = {key: value for key, value in pairs.items() if value is not None}
    # None is meaningful for bandwidth (unlimited): keep it when the key is there.
    for key, chart_key in (("uplink_bw", "uplink"), ("downlink_bw", "downlink")):
        if chart_key in network:
            result[key] = network[chart_key]
    if image.get("repository"):
        tag = image.get("tag")
        result["image"] = f"{image['repository']}:{tag}" if tag else image["repository"]
    return result


def cpu_quantity(cores: float) -> str:
    """Cores as a Kubernetes quantity: 0.05 -> ``50m``."""
    return f"{round(Decimal(str(cores)) * 1000)}m"


def memory_quantity(mib: int) -> str:
    """MiB as a Kubernetes quantity: 16 -> ``16Mi``."""
    return f"{int(mib)}Mi"


def bandwidth_quantity(mbit: float) -> str:
    """Mbit/s as the bandwidth plugin's quantity (bit/s): 16 -> ``16M``, 0.5 -> ``500k``."""
    value = Decimal(str(mbit))
    if value == value.to_integral_value():
        return f"{int(value)}M"
    return f"{round(value * 1000)}k"
