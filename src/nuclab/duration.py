"""The one duration grammar users type: ``500ms``, ``30s``, ``2m``, ``1h``, or plain seconds
(``12.5``, ``.5``). The load generator's flags and the probe's environment both read it."""

from __future__ import annotations

import re

from nuclab.errors import ValidationError

DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$")
UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_ALLOWED = "a positive duration such as 30s, 500ms, 2m or 1h (a plain number is seconds)"


def seconds(text: str | float) -> float | None:
    """Seconds in ``text`` (a number is seconds already), or None when it is no duration."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return float(text)
    match = DURATION_RE.match(text) if isinstance(text, str) else None
    return float(match.group(1)) * UNIT_SECONDS[match.group(2)] if match else None


def parse_duration(field: str, text: str | float) -> float:
    """Seconds in ``text``, a finite number > 0; else ``ValidationError`` naming ``field``."""
    value = seconds(text)
    if value is None or not 0 < value < float("inf"):
        raise ValidationError(field, text, DURATION_ALLOWED)
    return value
