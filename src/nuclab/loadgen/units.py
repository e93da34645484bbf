"""Parsing of the quantities a user types: durations (``nuclab.duration``), sizes, rates."""

from __future__ import annotations

import re

from nuclab.duration import DURATION_ALLOWED, parse_duration
from nuclab.errors import ValidationError

__all__ = ["DURATION_ALLOWED", "parse_duration", "parse_rate", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|k|K|M)?\s*$")
_SIZE_FACTORS = {None: 1, "B": 1, "k": 1024, "K": 1024, "KiB": 1024, "M": 1024**2, "MiB": 1024**2}

SIZE_ALLOWED = "a positive size in bytes such as 1024, 100KiB or 1MiB"


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
