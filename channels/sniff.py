"""Reading a header field from raw bytes, without parsing the message.

The hot paths need one or two fields of a message that is otherwise passed on untouched: the MLLP
client matches a reply's MSA-2 to the request's MSH-10 for every exchange, the EMR sender reads
MSA-1 of each ACK, metrics label by MSH-9. A full parse costs more than the exchange, so these
read the first segment (or find the MSA segment) directly. They never raise: a message too broken
to sniff gives ``b""`` / ``None`` and the caller's full parse (``channels.parse``) says why.

Field numbering is HL7's: MSH-1 is the field separator itself, so MSH-n is piece ``n - 1`` of the
segment split on it, while MSA-n is piece ``n``.
"""

from __future__ import annotations

import re

_SEGMENT_END = re.compile(rb"[\r\n]")


def _first_segment(payload: bytes) -> bytes:
    end = _SEGMENT_END.search(payload)
    return payload[: end.start()] if end else payload


def msh_field(payload: bytes, number: int) -> bytes:
    """MSH-``number`` (2 or more) of ``payload`` as raw bytes; ``b""`` when absent or no MSH."""
    if len(payload) < 4 or not payload.startswith(b"MSH"):
        return b""
    fields = _first_segment(payload).split(payload[3:4])
    return fields[number - 1] if number - 1 < len(fields) else b""


def control_id(payload: bytes) -> bytes:
    """MSH-10, the message control id, as sent (no unescaping, no trimming)."""
    return msh_field(payload, 10)


def message_type(payload: bytes) -> str:
    """``TYPE^TRIGGER`` from MSH-9, for metric labels and logs; ``"unknown"`` when absent."""
    value = msh_field(payload, 9)
    if not value:
        return "unknown"
    parts = value.split(payload[4:5] or b"^")
    return "^".join(p.decode("ascii", "replace") for p in parts[:2])


def msa(reply: bytes) -> tuple[bytes, bytes] | None:
    """(MSA-1, MSA-2) of a response, or None when it has no MSA segment (or no MSH first).

    MSA is the second segment of every response; it is found without splitting a large answer.
    """
    if len(reply) < 8 or not reply.startswith(b"MSH"):
        return None
    fs = reply[3:4]
    for sep in (b"\r", b"\n"):
        start = reply.find(sep + b"MSA" + fs)
        if start != -1:
            end = _SEGMENT_END.search(reply, start + 1)
            fields = reply[start + 1 : end.start() if end else len(reply)].split(fs)
            return (fields[1], fields[2] if len(fields) > 2 else b"")
    return None


def acknowledges(request: bytes, reply: bytes) -> bool:
    """True when the reply's MSA-2 (its first component) is the request's MSH-10."""
    found = msa(reply)
    if found is None:
        return False
    wanted = control_id(request)
    acked = found[1].split(reply[4:5] or b"^")[0].strip()
    return bool(wanted) and acked == wanted
