"""The probe's UDP wire format: a request and its echo, both tiny.

A request is ``NLQ1`` + sequence number; the answer is ``NLR1`` + the same sequence number +
the responder's name (UTF-8), so a prober that found a target by IP learns its name.
"""

from __future__ import annotations

import struct

REQUEST = b"NLQ1"
REPLY = b"NLR1"
_SEQ = struct.Struct("!Q")
MAX_NAME = 200


def request(seq: int) -> bytes:
    return REQUEST + _SEQ.pack(seq)


def reply_to(packet: bytes, name: bytes) -> bytes | None:
    """The answer to an echo request, or None when ``packet`` is not one."""
    if len(packet) != 12 or not packet.startswith(REQUEST):
        return None
    return REPLY + packet[4:12] + name[:MAX_NAME]


def parse_reply(packet: bytes) -> tuple[int, str] | None:
    """(sequence, responder name) of an echo answer, or None when ``packet`` is not one."""
    if len(packet) < 12 or not packet.startswith(REPLY):
        return None
    (seq,) = _SEQ.unpack_from(packet, 4)
    return seq, packet[12:].decode("utf-8", "replace")
