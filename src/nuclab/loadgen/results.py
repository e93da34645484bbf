"""The outcome of a run: what was asked, what was achieved, and the results file."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nuclab.errors import NuclabError, ValidationError


class TargetMissedError(NuclabError):
    """The run finished but did not hold the target rate (the results were still written)."""

    exit_code = 4


@dataclass
class RunResult:
    """One run of the load generator (a produce, consume or HTTP run)."""

    mode: str  # kafka-produce | kafka-consume | http
    target: str  # "1000 msg/s constant 10s", "max", ...
    unit: str  # msg/s, Mbit/s, req/s
    target_rate: float | None  # mean target rate in `unit`; None for max/consume
    achieved_rate: float  # in `unit`
    duration_s: float  # scheduled duration (or measured, for consume)
    elapsed_s: float  # from the first send to the last acknowledgement / response
    sent: int = 0
    completed: int = 0  # acknowledged by the broker / received / answered
    errors: int = 0
    bytes: int = 0
    messages_per_s: float = 0.0
    megabytes_per_s: float = 0.0
    latency_s: dict[str, float] = field(default_factory=dict)
    per_second: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    tolerance: float = 0.02

    @property
    def shortfall(self) -> float:
        """How far below the target the achieved rate is (0.05 = 5 % short; <= 0 is held)."""
        if not self.target_rate:
            return 0.0
        return 1.0 - self.achieved_rate / self.target_rate

    @property
    def held(self) -> bool:
        return self.shortfall <= self.tolerance + 1e-9

    def summary(self) -> str:
        lat = self.latency_s
        parts = [
            f"{self.mode}: achieved {self.achieved_rate:,.1f} {self.unit}",
            f"target {self.target}" if self.target_rate else f"({self.target})",
            f"{self.completed:,} ok, {self.errors:,} errors in {self.elapsed_s:.2f}s",
        ]
        if lat and not math.isnan(lat.get("p50", math.nan)):
            parts.append(
                "latency p50/p90/p99 "
                + "/".join(f"{lat[k] * 1000:.2f}" for k in ("p50", "p90", "p99"))
                + " ms"
            )
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shortfall"] = self.shortfall
        out["held"] = self.held
        return _finite(out)


def _finite(value: Any) -> Any:
    """JSON has no NaN: replace it with None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


RESULTS_ALLOWED = "a file name ending in .json or .csv"


def check_results_path(path: str | None) -> Path | None:
    """Validate ``--results`` before anything runs."""
    if path is None:
        return None
    p = Path(path)
    if p.suffix not in (".json", ".csv"):
        raise ValidationError("--results", path, RESULTS_ALLOWED)
    if not p.parent.exists():
        raise ValidationError("--results", path, "a file in an existing directory")
    return p


def write_results(result: RunResult, path: Path) -> None:
    """JSON: the whole result. CSV: one row of the scalar fields (latencies flattened)."""
    data = result.to_dict()
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return
    row = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
    row.update({f"latency_{k}_s": v for k, v in data["latency_s"].items()})
    row.update({k: v for k, v in data["extra"].items() if not isinstance(v, dict | list)})
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
