"""Campaigns: a grid of experiment runs, each exported, ending with one comparison.

A campaign file (YAML) has one key, ``campaign``::

    campaign:
      name: bw                  # the runs are experiments bw-1, bw-2, ... (the name rule holds)
      experiment:               # the base spec, as in a spec file (no name), or a spec file's path
        peers: 3
        node_labels: {node-kind: real}
      grid:                     # field: values; every combination, in the order written
        downlink_bw: [16, 8]
      repeats: 2                # each combination this many times
      duration: 60s             # traffic per run, once its peers run (nuclab.duration's grammar)
      output: datasets/bw       # default datasets/<name>; relative to the working folder

The runs go one after the other: create, the duration, export into ``<output>/<run>``, delete.
``<output>/campaign.json`` records each run as it starts and ends; a run that fails is recorded
and the campaign goes on. Run again, the campaign resumes: done and failed runs are kept (failed
ones are tried again with ``retry_failed``), a run that was cut off is started again from
nothing. Everything here is pure: ``nuclab.commands.campaign`` reads the lab and acts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from nuclab import spec
from nuclab.duration import parse_duration
from nuclab.errors import NotFoundError, NuclabError, ValidationError

STATE_FILE = "campaign.json"
REPEATS_MAX = 100
RUNS_MAX = 1000
DURATION_MAX = 24 * 3600.0
KEYS = ("name", "experiment", "grid", "repeats", "duration", "output")
DONE, FAILED, RUNNING = "done", "failed", "running"


@dataclass(frozen=True)
class Run:
    """One experiment run of the campaign: its number, name and spec fields."""

    index: int
    name: str
    values: dict[str, Any]  # the grid's values for this run
    repeat: int
    fields: dict[str, Any]  # the spec given to create (the lab's defaults fill the rest)


@dataclass(frozen=True)
class Campaign:
    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    repeats: int
    duration: float
    output: Path
    runs: tuple[Run, ...] = field(default=())

    def plan_digest(self) -> str:
        """What makes two campaign files the same campaign: the runs and the duration."""
        plan = {
            "duration": self.duration,
            "runs": [{"name": r.name, "fields": r.fields} for r in self.runs],
        }
        return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def _field(key: str) -> str:
    return f"campaign.{key}"


def _base(value: Any, where: Path) -> dict[str, Any]:
    """The base spec: a mapping, or the path of a spec file (relative to the campaign file)."""
    if isinstance(value, str):
        from nuclab.commands.experiment import load_spec_file

        path = Path(value) if Path(value).is_absolute() else where.parent / value
        value = load_spec_file(str(path))
        value = {k: v for k, v in value.items() if k != "name"}
    if not isinstance(value, dict):
        raise ValidationError(
            _field("experiment"), value, "a mapping of spec fields or a spec file's path"
        )
    if "name" in value:
        raise ValidationError(
            _field("experiment.name"), value["name"], "no name: the runs are named <campaign>-<n>"
        )
    return value


def _grid(value: Any) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(_field("grid"), value, "a mapping of spec field: list of values")
    for key, values in value.items():
        if key not in spec.FIELDS or key == "name":
            allowed = ", ".join(f for f in spec.FIELDS if f != "name")
            raise ValidationError(_field(f"grid.{key}"), values, f"a spec field ({allowed})")
        if not isinstance(values, list) or not values:
            raise ValidationError(_field(f"grid.{key}"), values, "a non-empty list of values")
    return dict(value)


def _repeats(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= REPEATS_MAX:
        raise ValidationError(_field("repeats"), value, f"a whole number from 1 to {REPEATS_MAX}")
    return value


def _duration(value: Any) -> float:
    seconds = parse_duration(_field("duration"), value)
    if seconds > DURATION_MAX:
        raise ValidationError(_field("duration"), value, "at most 24h")
    return seconds


def _runs(name: str, base: dict[str, Any], grid: dict[str, list[Any]], repeats: int) -> list[Run]:
    combos = list(itertools.product(*grid.values())) if grid else [()]
    total = len(combos) * repeats
    if total > RUNS_MAX:
        raise ValidationError(
            _field("grid"), f"{total} runs", f"at most {RUNS_MAX} runs (grid x repeats)"
        )
    last = f"{name}-{total}"
    try:
        spec.check_name(last)
    except ValidationError:
        raise ValidationError(
            _field("name"),
            name,
            f"a name that leaves room for the runs' '-<n>' ({last!r}); {spec.NAME_ALLOWED}",
        ) from None
    runs = []
    for number, (combo, repeat) in enumerate(
        itertools.product(combos, range(1, repeats + 1)), start=1
    ):
        values = dict(zip(grid, combo, strict=True))
        run_name = f"{name}-{number}"
        fields = {**base, **values, "name": run_name}
        try:
            checked = spec.parse(fields, create=True).as_dict()
        except ValidationError as exc:
            where = ", ".join(f"{k}={v}" for k, v in values.items()) or "the base spec"
            raise ValidationError(
                f"{_field('experiment')}.{exc.field} ({where})", exc.value, exc.allowed
            ) from None
        runs.append(Run(number, run_name, values, repeat, {k: checked[k] for k in fields}))
    return runs


def load(path: Path, output: Path | None = None) -> Campaign:
    """The campaign in ``path``, every run's spec checked; errors name the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationError(
            "campaign file", str(path), f"a readable file ({exc.strerror})"
        ) from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ValidationError("campaign file", str(path), f"valid YAML ({problem})") from None
    if not isinstance(data, dict) or set(data) != {"campaign"}:
        raise ValidationError("campaign file", str(path), "a mapping with one key, 'campaign'")
    body = data["campaign"]
    if not isinstance(body, dict):
        raise ValidationError("campaign", body, f"a mapping of {', '.join(KEYS)}")
    unknown = sorted(str(k) for k in body if k not in KEYS)
    if unknown:
        raise ValidationError(
            _field(unknown[0]), body[unknown[0]], f"unknown key; the keys are {', '.join(KEYS)}"
        )
    for required in ("name", "experiment", "duration"):
        if required not in body:
            raise ValidationError(_field(required), None, "required")
    name = spec.check_name(body["name"], _field("name"))
    base = _base(body["experiment"], path)
    grid = _grid(body.get("grid"))
    repeats = _repeats(body.get("repeats", 1))
    duration = _duration(body["duration"])
    if output is None:
        raw = body.get("output", str(Path("datasets") / name))
        if not isinstance(raw, str) or not raw:
            raise ValidationError(_field("output"), raw, "a folder path")
        output = Path(raw)
    runs = tuple(_runs(name, base, grid, repeats))
    return Campaign(name, base, grid, repeats, duration, output, runs)


# --- the record of what ran -----------------------------------------------------------------


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Entry:
    """What the record says of one run."""

    name: str
    status: str
    values: dict[str, Any]
    repeat: int
    dataset: str | None = None
    started: str | None = None
    ended: str | None = None
    error: str | None = None


class Record:
    """``<output>/campaign.json``: the campaign's plan digest and each run's entry, rewritten
    whole (a temporary file renamed over it) each time a run starts or ends."""

    def __init__(self, campaign: Campaign, entries: dict[str, Entry] | None = None) -> None:
        self.campaign = campaign
        self.path = campaign.output / STATE_FILE
        self.entries: dict[str, Entry] = entries or {}

    @classmethod
    def open(cls, campaign: Campaign) -> Record:
        """The record of this campaign: new, or the one a run of the same file left."""
        path = campaign.output / STATE_FILE
        if not path.exists():
            if campaign.output.exists() and any(campaign.output.iterdir()):
                raise ValidationError(
                    _field("output"),
                    str(campaign.output),
                    f"an empty or new folder, or one a campaign wrote (it has no {STATE_FILE})",
                )
            return cls(campaign)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = {e["name"]: Entry(**e) for e in data["runs"]}
            digest = data["plan"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValidationError(str(path), type(exc).__name__, "a campaign record") from None
        if digest != campaign.plan_digest():
            raise ValidationError(
                _field("output"),
                str(campaign.output),
                "the folder of this campaign: its record was written for other runs (the file "
                "changed since); give another output to run the new file",
            )
        return cls(campaign, entries)

    def save(self) -> None:
        self.campaign.output.mkdir(parents=True, exist_ok=True)
        data = {
            "campaign": self.campaign.name,
            "plan": self.campaign.plan_digest(),
            "duration_seconds": self.campaign.duration,
            "runs": [
                asdict(self.entries[r.name]) for r in self.campaign.runs if r.name in self.entries
            ],
        }
        fd, tmp = tempfile.mkstemp(dir=self.campaign.output, prefix=".campaign-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(tmp, self.path)

    def status(self, run: Run) -> str | None:
        entry = self.entries.get(run.name)
        return entry.status if entry else None

    def todo(self, retry_failed: bool) -> list[Run]:
        """The runs still to do, in order: not begun, cut off, or (``retry_failed``) failed."""
        again = {RUNNING, FAILED} if retry_failed else {RUNNING}
        return [r for r in self.campaign.runs if self.status(r) in (None, *again)]

    def mark(self, run: Run, status: str, *, error: str | None = None) -> None:
        entry = self.entries.get(run.name) or Entry(run.name, status, run.values, run.repeat)
        entry.status = status
        entry.dataset = run.name if status == DONE else None
        entry.error = error
        if status == RUNNING:
            entry.started, entry.ended = now(), None
        else:
            entry.ended = now()
        self.entries[run.name] = entry
        self.save()

    def datasets(self) -> list[Path]:
        return [
            self.campaign.output / run.name
            for run in self.campaign.runs
            if self.status(run) == DONE
        ]


# --- running --------------------------------------------------------------------------------


@dataclass
class Lab:
    """What a campaign does to the lab (``nuclab.commands.campaign`` gives the real ones)."""

    exists: Callable[[str], bool]
    create: Callable[[Run], None]
    export: Callable[[str, Path], None]
    delete: Callable[[str], None]
    wait: Callable[[float], None]
    say: Callable[[str], None]


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, NuclabError) else f"{type(exc).__name__}: {text}"


def check_free(record: Record, todo: list[Run], exists: Callable[[str], bool]) -> None:
    """A run's name that an experiment has, and that the campaign did not start, is someone
    else's: refused before anything is changed (a cut-off run of ours is cleaned up instead)."""
    for run in todo:
        if record.status(run) is None and exists(run.name):
            raise ValidationError(
                _field("name"),
                record.campaign.name,
                f"a name whose runs no experiment has: experiment {run.name!r} exists and this "
                "campaign did not start it (delete it, or give the campaign another name)",
            )


def execute(record: Record, todo: list[Run], lab: Lab) -> None:
    """Each run in turn: clean up what a cut-off attempt left, create, wait, export, delete.
    A run that fails is recorded with its error, its experiment deleted, and the next begins."""
    campaign = record.campaign
    for position, run in enumerate(todo, start=1):
        where = ", ".join(f"{k}={v}" for k, v in run.values.items())
        lab.say(
            f"run {run.index}/{len(campaign.runs)} ({position} of {len(todo)} to do): "
            f"{run.name}{f' ({where})' if where else ''}, repeat {run.repeat}"
        )
        dataset = campaign.output / run.name
        if record.status(run) is not None and lab.exists(run.name):
            lab.say(f"{run.name}: deleting what the cut-off attempt left")
            lab.delete(run.name)
        if dataset.exists():
            from nuclab.rerun import load_manifest

            try:  # an export that finished just before the campaign was cut off
                load_manifest(dataset)
            except NuclabError:
                raise ValidationError(
                    str(dataset),
                    "not a whole dataset",
                    "a folder the campaign may replace: move it away, then resume",
                ) from None
            record.mark(run, DONE)
            continue
        record.mark(run, RUNNING)
        try:
            lab.create(run)
            lab.wait(campaign.duration)
            lab.export(run.name, dataset)
            lab.delete(run.name)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # the campaign goes on past a failed run, recorded
            error = one_line(exc)
            lab.say(f"{run.name} failed: {error}")
            try:
                if lab.exists(run.name):
                    lab.delete(run.name)
            except Exception as cleanup:
                error += f" (and its deletion failed: {one_line(cleanup)})"
            record.mark(run, FAILED, error=error)
            continue
        record.mark(run, DONE)


def need_record(output: Path) -> Path:
    path = output / STATE_FILE
    if not path.is_file():
        raise NotFoundError(f"no campaign in {str(output)!r} (no {STATE_FILE})")
    return path


def summary(record: Record) -> list[list[str]]:
    """One row per run: name, grid values, repeat, status, dataset or error."""
    rows = []
    for run in record.campaign.runs:
        entry = record.entries.get(run.name)
        where = ",".join(f"{k}={v}" for k, v in run.values.items()) or "-"
        status = entry.status if entry else "to do"
        detail = (entry.error or entry.dataset or "") if entry else ""
        rows.append([run.name, where, str(run.repeat), status, detail])
    return rows


def results(record: Record) -> Mapping[str, int]:
    counts = {DONE: 0, FAILED: 0, RUNNING: 0, "to do": 0}
    for run in record.campaign.runs:
        counts[record.status(run) or "to do"] += 1
    return counts
