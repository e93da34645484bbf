"""Parsing of the quantities a user types: durations, sizes, rates."""

from __future__ import annotations

import re

from nuclab.errors import ValidationError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|k|K|M)?\s*$")
_SIZE_FACTORS = {None: 1, "B": 1, "k": 1024, "K": 1024, "KiB": 1024, "M": 1024**2, "MiB": 1024**2}

DURATION_ALLOWED = "a positive duration such as 30s, 500ms, 2m or 1h (a plain number is seconds)"
SIZE_ALLOWED = "a positive size in bytes such as 1024, 100KiB or 1MiB"


def parse_duration(field: str, text: str | float) -> float:
    """Seconds in ``text`` (``30s``, ``500ms``, ``2m``, ``1h``, ``12.5``); must be > 0."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if not match:
            raise ValidationError(field, text, DURATION_ALLOWED)
        seconds = float(match.group(1)) * _DURATION_FACTORS[match.group(2)]
    if seconds <= 0:
        raise ValidationError(field, text, DURATION_ALLOWED)
    return seconds


def parse_size(field: str, text: str | int) -> int:
    """Bytes in ``text`` (``1024``, ``100KiB``, ``1MiB``); must be > 0."""
    if isinstance(text, int):
        size = text
    else:
        match = _SIZE.match(text)
        if not match:
            raise ValidationError(field, text, SIZE_ALLOWED)
        size = int(match.group(1)) * _SIZE_FACTORS[match.group(2)]
    if size <= 0:
        raise ValidationError(field, text, SIZE_ALLOWED)
    return size


def parse_rate(field: str, text: str | float) -> float:
    """A rate (a positive number) from ``text``."""
    try:
        rate = float(text)
    except (TypeError, ValueError):
        raise ValidationError(field, text, "a rate above 0 (a number)") from None
    if not rate > 0 or rate == float("inf"):
        raise ValidationError(field, text, "a rate above 0 (a number)")
    return rate
