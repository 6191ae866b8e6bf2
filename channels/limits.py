"""Size limits on what a peer may make us hold, log or echo (issue 11 item 3).

A frame limit alone lets one field take the whole frame (an 8 MiB PID-5 was accepted and kept for
30 days); these checks work on the raw bytes, before anything is decoded or stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: MSH-10 is ST(20) up to v2.5 and 199 characters from v2.7 on; a longer one is never a real id, so
#: ACKs (MSA-2) and logs carry at most this much of it.
MAX_CONTROL_ID: Final = 199


@dataclass(frozen=True, slots=True)
class OversizedField:
    """Where the first field longer than the limit is: ``PID-5`` is ``("PID", 5)``."""

    segment: str
    field: int
    size: int

    def __str__(self) -> str:
        return f"{self.segment}-{self.field}"


def short_control_id(control_id: str) -> str:
    """``control_id`` cut to :data:`MAX_CONTROL_ID` characters, for an ACK or a log line."""
    return control_id[:MAX_CONTROL_ID]


def oversized_field(payload: bytes, limit: int) -> OversizedField | None:
    """The first field of ``payload`` longer than ``limit`` bytes (repetitions included), or None.

    Costs nothing for a message no longer than ``limit``, which no field can exceed.
    """
    if len(payload) <= limit or len(payload) < 4:
        return None
    fs = payload[3:4]
    for line in payload.replace(b"\n", b"\r").split(b"\r"):
        if len(line) <= limit:
            continue
        fields = line.split(fs)
        segment = fields[0][:3].decode("ascii", "replace")
        # MSH-1 is the separator itself, so MSH's n-th piece is MSH-(n+1).
        shift = 1 if segment == "MSH" else 0
        for index, value in enumerate(fields[1:], start=1):
            if len(value) > limit:
                return OversizedField(segment, index + shift, len(value))
    return None
