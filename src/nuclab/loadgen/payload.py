"""Message payloads (synthetic or files) and the timing stamp carried in each message key.

The key, not the payload, carries the stamp, so file payloads (image frames) reach consumers
byte for byte: ``NLG1`` + run id (u32) + sequence number (u64) + send time (ns since the epoch).
"""

from __future__ import annotations

import os
import struct
from itertools import cycle
from pathlib import Path

from nuclab.errors import ValidationError

STAMP = struct.Struct(">4sIQQ")
MAGIC = b"NLG1"
MAX_FILES = 10_000


def stamp(run_id: int, seq: int, t_ns: int) -> bytes:
    return STAMP.pack(MAGIC, run_id, seq, t_ns)


def read_stamp(key: bytes | None) -> tuple[int, int, int] | None:
    """(run id, sequence, send time ns) from a key written by ``stamp``; None for other keys."""
    if key is None or len(key) != STAMP.size or not key.startswith(MAGIC):
        return None
    _, run_id, seq, t_ns = STAMP.unpack(key)
    return run_id, seq, t_ns


class Payloads:
    """An endless supply of payloads: one synthetic buffer, or the given files in turn."""

    def __init__(self, items: list[bytes], source: str) -> None:
        self.items = items
        self.source = source
        self.max_size = max(len(i) for i in items)
        self.mean_size = sum(len(i) for i in items) / len(items)
        self._cycle = cycle(items)

    def __next__(self) -> bytes:
        return next(self._cycle)

    def __iter__(self) -> Payloads:
        return self

    @classmethod
    def synthetic(cls, size: int) -> Payloads:
        # Random bytes: compression (if a user turns it on) cannot make the load smaller.
        return cls([os.urandom(size)], f"synthetic {size} B")

    @classmethod
    def from_path(cls, path: str) -> Payloads:
        """A file, or every regular file in a directory (sorted by name), read into memory."""
        p = Path(path)
        if p.is_file():
            files = [p]
        elif p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file())[:MAX_FILES]
        else:
            raise ValidationError("--payload", path, "an existing file or directory of files")
        items = [f.read_bytes() for f in files]
        items = [i for i in items if i]
        if not items:
            raise ValidationError("--payload", path, "at least one non-empty file")
        return cls(items, f"{len(items)} file(s) from {path}")
