"""The probe's UDP wire format: a request and its echo, both small.

A request is ``NLQ1`` + sequence number + room for a name (``MAX_NAME`` zero bytes); the answer
is ``NLR1`` + the same sequence number + the responder's name (UTF-8, cut to the room the
request left), so a prober that found a target by IP learns its name. An answer is never larger
than its request: a forged source address gets back no more than was sent (the node probe
answers on every node's address, on the host's network).
"""

from __future__ import annotations

import struct

REQUEST = b"NLQ1"
REPLY = b"NLR1"
_SEQ = struct.Struct("!Q")
MAX_NAME = 200


HEADER = 12  # magic + sequence number


def request(seq: int) -> bytes:
    return REQUEST + _SEQ.pack(seq) + bytes(MAX_NAME)


def reply_to(packet: bytes, name: bytes) -> bytes | None:
    """The answer to an echo request, at most as large as it, or None when ``packet`` is not
    one."""
    if not HEADER <= len(packet) <= HEADER + MAX_NAME or not packet.startswith(REQUEST):
        return None
    return REPLY + packet[4:HEADER] + name[: len(packet) - HEADER]


def parse_reply(packet: bytes) -> tuple[int, str] | None:
    """(sequence, responder name) of an echo answer, or None when ``packet`` is not one."""
    if len(packet) < 12 or not packet.startswith(REPLY):
        return None
    (seq,) = _SEQ.unpack_from(packet, 4)
    return seq, packet[12:].decode("utf-8", "replace")
