"""The experiment spec: the one place that knows an experiment's fields, units, defaults, limits.

A spec is what a researcher writes (``-e name=purple -e peers=5``, ``nuclab create --name purple
--peers 5``, or a file ``experiments/purple.yml``). ``parse`` checks every field and returns an
``ExperimentSpec``; ``to_values`` turns it into the values of ``charts/experiment`` and
``from_values`` reads a spec back from a release's values (so that ``-e peers=10`` scales an
experiment without resetting its other fields). Bad input raises ``ValidationError(field,
value, allowed)`` before anything touches a cluster. Each field is a row of ``FIELD_TABLE``
(``LOADGEN_TABLE`` for the load generator's): its kind, range, default, chart value, CLI flag
and help; the checks, the chart values both ways, the CLI's flags and the generated files
(``tools/specgen.py``) read it.

Units are the ones users think in: CPU in cores, memory in MiB, bandwidth in Mbit/s, message
size in bytes, message interval ("rate", as the reference lab called it) in milliseconds,
latency and jitter in ms, loss in percent; the network matrix (``matrix``) in the same units.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from nuclab import services
from nuclab.errors import ValidationError
from nuclab.loadgen.schedule import parse_schedule

# Release, StatefulSet and Service names are "nuclab-exp-<name>". A StatefulSet's pods carry the
# label controller-revision-hash=<statefulset>-<hash of up to 10 characters>, and a label value
# is at most 63 characters: so the StatefulSet name has at most 52, and the name at most 41.
FULLNAME_PREFIX = "nuclab-exp-"
STATEFULSET_NAME_MAX = 63 - len("-") - 10
# The name rule, once: the CLI's help, the export, the roles (filter nuclab_experiment_name) read
# it from here; the chart's values.schema.json is generated from it (tools/specgen.py) and
# _helpers.tpl is checked against it by a test.
NAME_MAX = STATEFULSET_NAME_MAX - len(FULLNAME_PREFIX)
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME_RE = re.compile(NAME_PATTERN)
NAME_ALLOWED = (
    f"a DNS-1123 label: 1 to {NAME_MAX} characters of a-z, 0-9 and '-', "
    "starting and ending with a letter or digit"
)
NAME_HELP = f"experiment name (a DNS-1123 label of at most {NAME_MAX} characters)"

# Below 6 MiB container runtimes refuse to start a container (Docker's documented minimum is
# 6 MiB; runc's own init needs about that much before the workload runs).
RAM_MIN_MIB = 6
PEERS_MAX = 5000
ROLES = ("server", "client", "worker")
# The node label of a node's zone (the field zones, the matrix, the lab's placement).
ZONE_LABEL = "topology.kubernetes.io/zone"
# Node labels nuclab.io/<key> the spec sets through a field of its own.
RESERVED_NODE_LABELS = {"role": "nuclab.io/role is the field role (--role)"}
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
LABEL_KEY_RE = re.compile(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
PARAM_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
PARAM_KEY_MAX = 50
PARAM_VALUE_MAX = 4096  # each param is an env var of every peer and a key of a ConfigMap
PARAMS_MAX = 64
# An image reference as container runtimes parse it (distribution's reference grammar):
# [domain[:port]/]path[:tag][@digest], e.g. localhost/nuclab/tools:0.1.0.
_IMAGE_HOST_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_IMAGE_DOMAIN = rf"{_IMAGE_HOST_PART}(?:\.{_IMAGE_HOST_PART})*(?::[0-9]+)?"
_IMAGE_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_RE = re.compile(
    rf"^(?:{_IMAGE_DOMAIN}/)?{_IMAGE_PATH}(?:/{_IMAGE_PATH})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
IMAGE_MAX = 255
DEFAULT_IMAGE = "localhost/nuclab/tools:0.1.0"
# The Go peer (src/agents, in the tools image): the chart's default command too.
DEFAULT_COMMAND: tuple[str, ...] = ("nuclab-peer",)


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
    # 0 is allowed too for an experiment that exists: it pauses it (peers).
    pause: bool = False

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

    def span(self) -> str:
        """The range as the CLI's help and the docs say it: ``1 to 5000``, ``> 0 to 64 in steps
        of 0.001``."""
        low = f"> {_fmt(self.minimum)}" if self.exclusive_minimum else _fmt(self.minimum)
        text = f"{low} to {_fmt(self.maximum)}"
        if not self.integer:
            text += f" in steps of {_fmt(self.step)}"
        return text

    def check(self, value: object) -> int | float | None:
        """``value`` as this field's number, or ``ValidationError`` naming the field."""
        return _number(self, value, create=True)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# What a field holds, which says how it is checked, converted for the chart and set on the CLI:
# number (see Number), name, choice (one of choices), strings (a list), mapping, bool, string,
# image (split into image.repository and image.tag in the chart), loadgen (LOADGEN_TABLE) and
# matrix (a list of zone-to-zone links, MATRIX_KEYS).
Kind = Literal[
    "number", "name", "choice", "strings", "mapping", "bool", "string", "image", "loadgen",
    "matrix",
]  # fmt: skip


@dataclass(frozen=True)
class Field:
    """One row of a table of fields: the field, its chart value, its flag and its words.

    ``chart`` is the path of the chart value (``experiment.msgInterval``; a load generator's
    field's is below ``loadgen``). ``help`` is the line the CLI's help, the chart schema's
    description and the docs show; ``allowed`` says in the docs what a number's range does not
    (or, for the other kinds, what is allowed). ``flag`` is the ``nuclab create`` flag, if any.
    """

    name: str
    kind: Kind
    chart: str
    default: Any
    help: str
    allowed: str = ""
    flag: str = ""
    number: Number | None = None
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.kind == "number") != (self.number is not None):
            raise ValueError(f"field {self.name}: a number has a Number, no other kind has one")


def _numeric(
    name: str, unit: str, minimum: float, maximum: float, *, default: float, chart: str,
    help: str, flag: str = "", allowed: str = "", **limits: Any,
) -> Field:  # fmt: skip
    number = Number(name, unit, minimum, maximum, **limits)
    return Field(name, "number", chart, default, help, allowed, flag, number)


# The experiment's fields, in the order errors list them. The defaults are the reference lab's
# experiment: 5 peers, 1440 B every 2000 ms, 5% of a core, 16 MiB, 16/16 Mbit/s. The chart's
# values.schema.json, the playbook's field list and the table in docs/experiments.md are
# generated from this table (tools/specgen.py, `make generate`; a unit test checks).
FIELD_TABLE: tuple[Field, ...] = (
    Field("name", "name", "experiment.name", None, NAME_HELP,
          f"DNS-1123 label, 1 to {NAME_MAX} characters (so `nuclab-exp-<name>` and the "
          "StatefulSet's revision label fit)", flag="--name"),
    _numeric("peers", "peers", 1, PEERS_MAX, pause=True, default=5, chart="experiment.peers",
             help="number of peers", flag="--peers", allowed="0 pauses an existing experiment"),
    _numeric("msg_size", "bytes", 1, 16 * 1024 * 1024, default=1440, chart="experiment.msgSize",
             help="message size in bytes", flag="--msg-size"),
    _numeric("msg_rate", "ms between messages", 1, 3_600_000, default=2000,
             chart="experiment.msgInterval", help="milliseconds between two messages",
             flag="--msg-rate"),
    _numeric("connect_to", "peers", 0, PEERS_MAX, default=5, chart="experiment.connectTo",
             help="peers each peer connects to (more = all)", flag="--connect-to"),
    _numeric("cpu", "cores", 0, 64, exclusive_minimum=True, integer=False, step=0.001,
             default=0.05, chart="resources.cpu", help="CPU limit per peer in cores (0.05 = 5%)",
             flag="--cpu", allowed="0.05 renders as `50m`; limit = request"),
    _numeric("ram", "MiB", RAM_MIN_MIB, 65536, default=16, chart="resources.memory",
             help="memory limit per peer in MiB", flag="--ram",
             allowed=f"below {RAM_MIN_MIB} no container starts; 16 renders as `16Mi`"),
    _numeric("uplink_bw", "Mbit/s", 0, 100_000, exclusive_minimum=True, integer=False,
             step=0.001, optional=True, default=16, chart="network.uplink",
             help="uplink bandwidth per peer in Mbit/s", flag="--uplink-bw",
             allowed="`null` = unlimited (kubernetes.io/egress-bandwidth)"),
    _numeric("downlink_bw", "Mbit/s", 0, 100_000, exclusive_minimum=True, integer=False,
             step=0.001, optional=True, default=16, chart="network.downlink",
             help="downlink bandwidth per peer in Mbit/s", flag="--downlink-bw",
             allowed="`null` = unlimited (kubernetes.io/ingress-bandwidth)"),
    _numeric("latency", "ms", 0, 60_000, integer=False, step=0.001, default=0,
             chart="network.latency", help="added latency in ms (tc netem)", flag="--latency"),
    _numeric("jitter", "ms", 0, 60_000, integer=False, step=0.001, default=0,
             chart="network.jitter", help="jitter of the added latency in ms", flag="--jitter",
             allowed="needs latency > 0"),
    _numeric("loss", "percent", 0, 100, integer=False, step=0.001, default=0,
             chart="network.loss", help="packet loss in percent", flag="--loss"),
    # The RTT probe sidecar (python3 -m nuclab.probe, 48 MiB and 0.02 CPU beside each peer).
    _numeric("probe_max_targets", "peers", 0, PEERS_MAX, default=16, chart="probe.maxTargets",
             help="peers each RTT probe measures (0 = all)", flag="--probe-max-targets"),
    Field("role", "choice", "placement.role", "worker", "lab role of the peers' nodes",
          "peers run on nodes with this `nuclab.io/role`", "--role", choices=ROLES),
    Field("zones", "strings", "placement.zones", [], "restrict peers to a zone (repeatable)",
          "zone names (`topology.kubernetes.io/zone`); empty = any", "--zone"),
    Field("node_labels", "mapping", "placement.nodeLabels", {}, "node label nuclab.io/KEY=VALUE",
          "`key: value` selects nodes labelled `nuclab.io/<key>=<value>`", "--label"),
    Field("params", "mapping", "experiment.params", {}, "extra parameter (env)",
          "extra parameters: `NUCLAB_PARAM_<KEY>` environment variables", "--param"),
    Field("image", "image", "image", DEFAULT_IMAGE, "peer image",
          "an image reference (the chart's `image.repository` and `image.tag`)", "--image"),
    Field("command", "strings", "command", list(DEFAULT_COMMAND), "the peer's command",
          "a command of its own turns the health probes off (`probes.enabled`)"),
    Field("args", "strings", "args", [], "the peer's arguments"),
    Field("probe", "bool", "probe.enabled", False,
          "run the RTT probe sidecar beside each peer (48 MiB, 0.02 CPU); --no-probe stops it",
          "true in `experiments/purple.yml`; see "
          "[measurement](measurement.md#the-probe-nuclab-probe)", "--probe"),
    Field("loadgen", "loadgen", "loadgen", {}, "a load generator Job on a client node",
          "see [Kafka and load generation]"
          "(kafka-and-load.md#in-an-experiment-the-loadgen-block)"),
    Field("matrix", "matrix", "network.matrix", [],
          "zone-to-zone links (delay, jitter, loss, rate), applied by the node agent",
          "entries `{from: ZONE, to: ZONE, delay, jitter, loss, rate, symmetric}` in ms, ms, "
          "percent, Mbit/s; one entry per directed link; see [the network matrix]"
          "(#the-network-matrix-matrix)", "--matrix"),
)  # fmt: skip
NUMBERS: dict[str, Number] = {row.name: row.number for row in FIELD_TABLE if row.number}
FIELDS: tuple[str, ...] = tuple(row.name for row in FIELD_TABLE)
DEFAULTS: dict[str, Any] = {
    row.name: copy.deepcopy(row.default) for row in FIELD_TABLE if row.name != "name"
}

# The optional load generator (`loadgen:`): one Job of `nuclab loadgen` on a `client` node,
# producing to Kafka (by default the lab's: kafka role, cluster `lab` in namespace `kafka`) or
# sending HTTP requests (by default to the experiment's headless Service). `schedule` (steps and
# ramps) replaces `rate` and `duration`.
LOADGEN_MODES = ("kafka", "http")
LOADGEN_UNITS = ("msg", "mbit")
LOADGEN_ARRIVALS = ("constant", "poisson")
LOADGEN_RAM_MIN_MIB = 64  # python3 + librdkafka + aiohttp: about 50 MiB resident
# Its fields; `chart` is below the chart's `loadgen`.
LOADGEN_TABLE: tuple[Field, ...] = (
    Field("enabled", "bool", "enabled", False, "whether the load generator runs"),
    Field("mode", "choice", "mode", "kafka",
          "kafka (`nuclab loadgen produce`) or http (`nuclab loadgen http`)",
          choices=LOADGEN_MODES),
    Field("bootstrap", "string", "kafka.bootstrap", "",
          "host:port of the brokers; empty = the lab's Kafka, lab-kafka-bootstrap.kafka.svc:9092",
          "`HOST:PORT[,HOST:PORT...]`"),
    Field("topic", "string", "kafka.topic", "frames", "the Kafka topic",
          "a Kafka topic name (kafka mode)"),
    Field("url", "string", "http.url", "",
          "URL of the requests; empty = the headless Service's port named http, else the "
          "default peer's /echo on the metrics port",
          "an `http://` or `https://` URL (http mode)"),
    Field("arrivals", "choice", "http.arrivals", "constant",
          "constant or poisson inter-arrival times", "http mode", choices=LOADGEN_ARRIVALS),
    _numeric("rate", "msg/s, Mbit/s with unit mbit, req/s in http mode", 0, 1_000_000,
             exclusive_minimum=True, integer=False, step=0.001, default=100, chart="rate",
             help="target rate: messages/s (Mbit/s of payload with unit mbit) or requests/s"),
    Field("unit", "choice", "unit", "msg", "msg or mbit (kafka mode only)",
          choices=LOADGEN_UNITS),
    Field("schedule", "string", "schedule", "",
          "steps and ramps (RATE:DURATION or FROM..TO:DURATION, comma-separated); replaces "
          "rate and duration", "as `--schedule` (`100:30s,100..500:1m`); at most 86400 s"),
    _numeric("duration", "seconds", 1, 86_400, default=60, chart="duration",
             help="seconds of load"),
    _numeric("size", "bytes", 1, 16 * 1024 * 1024, default=1024, chart="size",
             help="message size in bytes (kafka mode)",
             allowed="the topic's `max.message.bytes` is checked when it runs"),
    Field("pushgateway", "string", "pushgateway", services.pushgateway()["url"],
          "Pushgateway the metrics go to while running; empty = none",
          "an `http://` URL, `\"\"` = no pushes"),
    Field("image", "image", "image", DEFAULT_IMAGE, "the load generator's image",
          "an image reference (`lab_nuclab_tools_version`)"),
    _numeric("cpu", "cores", 0, 64, exclusive_minimum=True, integer=False, step=0.001,
             default=0.5, chart="resources.cpu", help="CPU of the load generator in cores",
             allowed="limit = request"),
    _numeric("ram", "MiB", LOADGEN_RAM_MIN_MIB, 65536, default=256, chart="resources.memory",
             help="memory of the load generator in MiB", allowed="limit = request"),
    Field("args", "strings", "args", [], "more arguments of `nuclab loadgen <mode>`",
          "e.g. `[-X, compression.type=lz4]`"),
)  # fmt: skip
LOADGEN_NUMBERS: dict[str, Number] = {row.name: row.number for row in LOADGEN_TABLE if row.number}
LOADGEN_DEFAULTS: dict[str, Any] = {row.name: copy.deepcopy(row.default) for row in LOADGEN_TABLE}
BOOTSTRAP_RE = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}(,[A-Za-z0-9.-]+:[0-9]{1,5})*$")
TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
URL_RE = re.compile(r"^https?://[^\s/?#]+(/\S*)?$")


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
    probe_max_targets: int
    role: str
    zones: list[str] = field(default_factory=list)
    node_labels: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    image: str = DEFAULT_IMAGE
    command: list[str] = field(default_factory=lambda: list(DEFAULT_COMMAND))
    args: list[str] = field(default_factory=list)
    probe: bool = False
    loadgen: dict[str, Any] = field(default_factory=lambda: dict(LOADGEN_DEFAULTS))
    matrix: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fullname(self) -> str:
        return fullname(self.name)

    @property
    def netem(self) -> bool:
        """Whether the spec asks for tc netem per peer (latency, jitter or loss), which nuclab's
        node agent (roles/net_agent) applies from the node; its nodes need sch_netem."""
        return bool(self.latency or self.jitter or self.loss)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fullname(name: str) -> str:
    """The release (and StatefulSet) name of an experiment: ``nuclab-exp-<name>``."""
    return FULLNAME_PREFIX + check_name(name)


def check_name(name: object, field: str = "name") -> str:
    """A DNS-1123 label short enough for every object the chart creates; errors name ``field``."""
    if not isinstance(name, str) or not name or len(name) > NAME_MAX or not NAME_RE.match(name):
        raise ValidationError(field, name, NAME_ALLOWED)
    return name


# A network matrix entry (`matrix:`), in the spec's units: the link from peers in zone `from` to
# peers in zone `to`. `symmetric` (the default) sets the way back too. The node agent
# (nuclab.netagent) applies the directed entries; the chart carries the checked entries (every
# key present, `parse`).
MATRIX_KEYS = ("from", "to", "delay", "jitter", "loss", "rate", "symmetric")
MATRIX_DEFAULTS: dict[str, Any] = {
    "delay": 0, "jitter": 0, "loss": 0, "rate": None, "symmetric": True,
}  # fmt: skip


def directed_matrix(matrix: list[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The links of checked matrix entries, one per (from zone, to zone): a symmetric entry
    gives both ways; an entry written for the way back replaces the mirrored one."""
    links: dict[tuple[str, str], dict[str, Any]] = {}
    mirrored: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in matrix:
        entry = {**MATRIX_DEFAULTS, **raw}
        link = {key: entry[key] for key in ("delay", "jitter", "loss", "rate")}
        links[(entry["from"], entry["to"])] = link
        if entry["symmetric"] and entry["from"] != entry["to"]:
            mirrored[(entry["to"], entry["from"])] = link
    return {**mirrored, **links}


# The checks of an entry's numbers (the spec's units). Below 0.1 Mbit/s an HTB class cannot send
# even one full-size packet (1500 B) in about 100 ms: shaping turns into stalls.
MATRIX_NUMBERS: dict[str, Number] = {
    "delay": Number("delay", "ms", 0, 60_000, integer=False, step=0.001),
    "jitter": Number("jitter", "ms", 0, 60_000, integer=False, step=0.001),
    "loss": Number("loss", "percent", 0, 100, integer=False, step=0.001),
    "rate": Number("rate", "Mbit/s", 0.1, 100_000, integer=False, step=0.001, optional=True),
}
MATRIX_RATE_WHY = "below 0.1 Mbit/s HTB cannot send a full-size (1500 B) packet per about 100 ms"
MATRIX_ZONE_ALLOWED = (
    "a zone name (topology.kubernetes.io/zone): 1 to 63 of A-Z, a-z, 0-9, '-', '_', '.', "
    "starting and ending with a letter or digit"
)


def _matrix_zone(where: str, value: object) -> str:
    """A zone name as the field ``zones`` takes one; required (no empty name)."""
    if value is None:
        raise ValidationError(where, value, f"{MATRIX_ZONE_ALLOWED} (required)")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(where, value, MATRIX_ZONE_ALLOWED)
    text = str(value)
    if not text or len(text) > 63 or not LABEL_VALUE_RE.match(text):
        raise ValidationError(where, value, MATRIX_ZONE_ALLOWED)
    return text


def _matrix_entry(where: str, raw: object) -> dict[str, Any]:
    """One entry, checked, with every key of MATRIX_KEYS (in that order)."""
    if not isinstance(raw, Mapping):
        raise ValidationError(where, raw, f"a mapping with the keys {', '.join(MATRIX_KEYS)}")
    for key in raw:
        if key not in MATRIX_KEYS:
            raise ValidationError(
                f"{where}.{key}", raw[key], f"unknown key; the keys are {', '.join(MATRIX_KEYS)}"
            )
    merged = {**MATRIX_DEFAULTS, **raw}
    entry: dict[str, Any] = {
        "from": _matrix_zone(f"{where}.from", merged.get("from")),
        "to": _matrix_zone(f"{where}.to", merged.get("to")),
    }
    for key, number in MATRIX_NUMBERS.items():
        try:
            entry[key] = _number(number, merged[key], create=True)
        except ValidationError as exc:
            allowed = exc.allowed
            if key == "rate":
                allowed = allowed.replace("null for none", "null for unlimited")
                allowed += f"; {MATRIX_RATE_WHY}"
            raise ValidationError(f"{where}.{key}", exc.value, allowed) from None
    if entry["jitter"] and not entry["delay"]:
        raise ValidationError(f"{where}.jitter", merged["jitter"], "0 unless delay is > 0")
    entry["symmetric"] = _bool(f"{where}.symmetric", merged["symmetric"])
    if not entry["delay"] and not entry["loss"] and entry["rate"] is None:
        raise ValidationError(
            where, dict(raw), "an entry that sets delay, loss or rate (this one changes nothing)"
        )
    return {key: entry[key] for key in MATRIX_KEYS}


def _matrix(value: object) -> list[dict[str, Any]]:
    """The checked ``matrix``: every entry with all of MATRIX_KEYS, numbers as int or float.

    Each directed link (from zone, to zone) is set by one entry only: a second entry for a link
    an earlier one sets (itself, or mirrored by a symmetric entry) is refused, although
    ``directed_matrix`` would let an explicit entry win over a mirrored one, so that a matrix
    has one meaning whichever order it is read in. Errors name ``matrix[<index>].<key>``.
    """
    if not isinstance(value, list | tuple):
        raise ValidationError(
            "matrix", value,
            "a list of entries {from, to, delay, jitter, loss, rate, symmetric} "
            "(as an extra var: -e '{\"matrix\": [...]}')",
        )  # fmt: skip
    result: list[dict[str, Any]] = []
    owner: dict[tuple[str, str], int] = {}
    for index, raw in enumerate(value):
        where = f"matrix[{index}]"
        entry = _matrix_entry(where, raw)
        links = [(entry["from"], entry["to"])]
        if entry["symmetric"] and entry["from"] != entry["to"]:
            links.append((entry["to"], entry["from"]))
        for link in links:
            if link in owner:
                first = f"matrix[{owner[link]}]"
                raise ValidationError(
                    where, f"{link[0]} -> {link[1]}",
                    f"one entry per directed link: {first} sets {link[0]} -> {link[1]} "
                    "already (a symmetric entry sets both ways)",
                )  # fmt: skip
        owner.update(dict.fromkeys(links, index))
        result.append(entry)
    return result


def unknown_zones(matrix: list[Mapping[str, Any]], lab_zones: Iterable[str]) -> list[str]:
    """The zones a checked matrix names (``from`` or ``to``) that no node of the lab carries,
    sorted: a link to such a zone would shape nothing."""
    named = {str(entry[key]) for entry in matrix for key in ("from", "to")}
    return sorted(named - set(lab_zones))


def effective_connect_to(connect_to: int, peers: int) -> int:
    """How many peers a peer really connects to: a connect-to beyond the others means all."""
    return max(0, min(connect_to, peers - 1))


def _number(spec: Number, value: object, *, create: bool) -> int | float | None:
    if value is None and spec.optional:
        return None
    allowed = spec.allowed()
    low = Decimal(str(spec.minimum))
    if spec.pause and not create:
        allowed = allowed.replace(f">= {_fmt(spec.minimum)}", ">= 0 (0 pauses the experiment)")
        low = Decimal(0)
    parsed = _to_decimal(spec.name, value, allowed)
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
        if key in RESERVED_NODE_LABELS:
            raise ValidationError(
                f"node_labels.{key}", item, f"another key: {RESERVED_NODE_LABELS[key]}"
            )
        result[key] = text
    return result


def _params(value: object) -> dict[str, str]:
    allowed = (
        f"a mapping of at most {PARAMS_MAX} keys (a lower-case letter, then a-z, 0-9, '_', at "
        f"most {PARAM_KEY_MAX} characters) to strings, numbers or booleans of at most "
        f"{PARAM_VALUE_MAX} characters"
    )
    if not isinstance(value, Mapping):
        raise ValidationError("params", value, allowed)
    if len(value) > PARAMS_MAX:
        raise ValidationError("params", f"{len(value)} keys", allowed)
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or len(key) > PARAM_KEY_MAX or not PARAM_KEY_RE.match(key):
            raise ValidationError("params", key, allowed)
        if isinstance(item, dict | list) or item is None:
            raise ValidationError(f"params.{key}", item, allowed)
        text = str(item).lower() if isinstance(item, bool) else str(item)
        if len(text) > PARAM_VALUE_MAX:
            raise ValidationError(f"params.{key}", _shortened(text), allowed)
        result[key] = text
    return result


def _shortened(text: str) -> str:
    """A long value as an error message shows it: its start and its length."""
    return f"{text[:20]}... ({len(text)} characters)" if len(text) > 40 else text


def _image(value: object) -> str:
    allowed = (
        "an image reference [registry[:port]/]path[:tag][@digest] such as "
        f"localhost/nuclab/tools:0.1.0 (path lower-case, at most {IMAGE_MAX} characters)"
    )
    if not isinstance(value, str) or len(value) > IMAGE_MAX:
        raise ValidationError("image", _shortened(str(value)), allowed)
    if not IMAGE_RE.match(value):
        raise ValidationError("image", value, allowed)
    return value


def _loadgen_choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValidationError(f"loadgen.{key}", value, f"one of {', '.join(choices)}")
    return str(value)


def _loadgen_text(key: str, value: object, pattern: re.Pattern[str], allowed: str) -> str:
    """A string that is empty (the default target) or matches ``pattern``."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > 2048 or not pattern.match(value):
        raise ValidationError(f"loadgen.{key}", value, allowed)
    return value


def _loadgen_merge(layers: list[object]) -> dict[str, Any]:
    """Each layer's keys over the previous ones' (a spec that gives ``loadgen: {rate: 200}``
    keeps the other settings the experiment runs with)."""
    merged: dict[str, Any] = dict(LOADGEN_DEFAULTS)
    allowed_keys = f"unknown field; the loadgen fields are {', '.join(LOADGEN_DEFAULTS)}"
    for layer in layers:
        if layer is None:
            continue
        if not isinstance(layer, Mapping):
            raise ValidationError("loadgen", layer, "a mapping of loadgen fields")
        for key in layer:
            if key not in LOADGEN_DEFAULTS:
                raise ValidationError(f"loadgen.{key}", layer[key], allowed_keys)
        merged.update(layer)
    return merged


def _bool(name: str, value: object) -> bool:
    """true or false; also as the strings an extra var (``-e probe=true``) arrives as."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ValidationError(name, value, "true or false")
    return value


def _loadgen_topic(value: object) -> str:
    if not isinstance(value, str) or not TOPIC_RE.match(value) or value in (".", ".."):
        allowed = "a Kafka topic name: 1 to 249 of a-z, A-Z, 0-9, '.', '_', '-'"
        raise ValidationError("loadgen.topic", value, allowed)
    return value


def _loadgen_schedule(value: object) -> str:
    """A schedule that parses, within the rate and duration limits; "" = rate and duration."""
    if value is None or value == "":
        return ""
    allowed = "a schedule such as 100:30s,100..500:60s (at most 86400 s, rates up to 1000000)"
    if not isinstance(value, str) or len(value) > 2048:
        raise ValidationError("loadgen.schedule", value, allowed)
    parsed = parse_schedule(value, "loadgen.schedule")
    rate, duration = LOADGEN_NUMBERS["rate"], LOADGEN_NUMBERS["duration"]
    if parsed.duration > duration.maximum or parsed.peak_rate > rate.maximum:
        raise ValidationError("loadgen.schedule", value, allowed)
    return re.sub(r"\s+", "", value)


def _loadgen(layers: list[object]) -> dict[str, Any]:
    """The checked ``loadgen`` fields; errors name ``loadgen.<field>``."""
    merged = _loadgen_merge(layers)
    result: dict[str, Any] = {
        "enabled": _bool("loadgen.enabled", merged["enabled"]),
        "mode": _loadgen_choice("mode", merged["mode"], LOADGEN_MODES),
        "bootstrap": _loadgen_text(
            "bootstrap", merged["bootstrap"], BOOTSTRAP_RE,
            "HOST:PORT[,HOST:PORT...] of Kafka brokers, or empty for the lab's Kafka",
        ),
        "topic": _loadgen_topic(merged["topic"]),
        "url": _loadgen_text(
            "url", merged["url"], URL_RE,
            "an http:// or https:// URL, or empty for the experiment's headless Service",
        ),
        "arrivals": _loadgen_choice("arrivals", merged["arrivals"], LOADGEN_ARRIVALS),
        "unit": _loadgen_choice("unit", merged["unit"], LOADGEN_UNITS),
        "schedule": _loadgen_schedule(merged["schedule"]),
        "pushgateway": _loadgen_text(
            "pushgateway", merged["pushgateway"], URL_RE,
            "the http:// URL of a Pushgateway, or empty for none",
        ),
    }  # fmt: skip
    try:
        for key, number in LOADGEN_NUMBERS.items():
            result[key] = _number(number, merged[key], create=True)
        result["image"] = _image(merged["image"])
        result["args"] = _string_list("args", merged["args"])
    except ValidationError as exc:
        raise ValidationError(f"loadgen.{exc.field}", exc.value, exc.allowed) from None
    if result["mode"] == "http" and result["unit"] != "msg":
        raise ValidationError("loadgen.unit", result["unit"], "msg in http mode (requests/s)")
    return {key: result[key] for key in LOADGEN_DEFAULTS}


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
    values["probe"] = _bool("probe", merged["probe"])
    values["loadgen"] = _loadgen(
        [(defaults or {}).get("loadgen"), (base or {}).get("loadgen"), raw.get("loadgen")]
    )
    values["matrix"] = _matrix(merged["matrix"])
    if values["jitter"] and not values["latency"]:
        raise ValidationError("jitter", merged["jitter"], "0 unless latency is > 0")
    return ExperimentSpec(**values)


def _chart_values(table: tuple[Field, ...], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The chart values of checked ``fields``, each at its row's ``chart`` path."""
    values: dict[str, Any] = {}
    for row in table:
        value = fields[row.name]
        if row.kind == "image":
            repository, tag = split_image(value)
            value = {"repository": repository, "tag": tag}
        elif row.kind == "loadgen":
            value = loadgen_values(value)
        else:
            value = copy.deepcopy(value)
        *parents, key = row.chart.split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    return values


_ABSENT = object()


def _chart_value(values: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` (``experiment.msgInterval``), or ``_ABSENT``."""
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _fields_from_values(table: tuple[Field, ...], values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields found at the rows' ``chart`` paths of ``values`` (inverse of the above)."""
    result: dict[str, Any] = {}
    for row in table:
        value = _chart_value(values, row.chart)
        if row.kind == "image":
            if isinstance(value, Mapping) and value.get("repository"):
                tag = value.get("tag")
                result[row.name] = f"{value['repository']}:{tag}" if tag else value["repository"]
        elif row.kind == "loadgen":
            if isinstance(value, Mapping):
                result[row.name] = loadgen_from_values(value)
        elif value is not None and value is not _ABSENT:
            result[row.name] = value
        elif value is None and row.number and row.number.optional:
            result[row.name] = None  # bandwidth: null is meaningful (unlimited), kept when given
    return result


def to_values(spec: ExperimentSpec) -> dict[str, Any]:
    """The values of ``charts/experiment`` for a spec (the chart renders Kubernetes units)."""
    values = _chart_values(FIELD_TABLE, spec.as_dict())
    # nuclab's peer serves /readyz and /healthz; a workload of the user's own may not.
    values["probes"] = {"enabled": list(spec.command) == list(DEFAULT_COMMAND)}
    return values


def loadgen_values(loadgen: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's ``loadgen`` values for the spec's ``loadgen`` fields."""
    return _chart_values(LOADGEN_TABLE, loadgen)


def loadgen_from_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's ``loadgen`` fields from the chart's ``loadgen`` values (inverse of the above)."""
    return _fields_from_values(LOADGEN_TABLE, values)


def from_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The spec fields a release was installed with (inverse of ``to_values``)."""
    return _fields_from_values(FIELD_TABLE, values)
