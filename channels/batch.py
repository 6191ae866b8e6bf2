"""Files and batches of several messages: splitting fixture/replay files, and the HL7 batch protocol.

Files:
A new message starts at a line beginning with ``MSH`` that follows a blank line (``\\n\\n``, ``\\r\\r``,
``\\r\\n\\r\\n``) or the start of the file. Splitting only at "blank line + MSH" keeps a blank line *inside*
a message (seen in hand-edited files) from cutting it in two. MLLP-framed files are the transport's business
(``mllp``), not this module's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo

from .errors import ParseError
from .escaping import STANDARD, Delimiters, escape
from .ids import Clock, ControlIdSource, random_control_ids, system_clock
from .model import Party
from .timestamps import format_ts

_BOUNDARY = re.compile(rb"(?:\r\n|\r|\n)[ \t]*(?:\r\n|\r|\n)\s*(?=MSH)")


def split_messages(data: bytes) -> list[bytes]:
    """Payloads in ``data``, each stripped of surrounding blank lines; empty input gives ``[]``."""
    parts = _BOUNDARY.split(data)
    return [p.strip(b"\r\n\t ") for p in parts if p.strip(b"\r\n\t \x00")]


# --------------------------------------------------------------------------------------------------------------
# HL7 batches (chapter 2, "Batch protocol"): [FHS] {[BHS] {MSH...} [BTS]} [FTS], in one MLLP frame or a file.
#
# Every message inside is processed on its own; the answer is a response batch whose BHS-12 / FHS-12 name
# the sender's BHS-11 / FHS-11, holding the ACKs (all of them, or per the standard's "exception basis"
# only those in error: an empty response batch then means every message was accepted). Several BHS
# groups in one file are flattened into one list of messages and answered in one response batch.
# parse_batch also reads several MSH with no header (files that concatenate messages).

_LINE = re.compile(rb"\r\n|\r|\n")
_HEADERS = (b"FHS", b"BHS")
_TRAILERS = (b"BTS", b"FTS")


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """An FHS or BHS, values unescaped (BHS-3..6 as HD first components, BHS-11 its control id)."""

    segment: str
    encoding_characters: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    control_id: str
    """FHS-11 / BHS-11 (may be empty)."""


@dataclass(frozen=True, slots=True)
class Batch:
    messages: tuple[bytes, ...]
    """Each inner message, segments ended with CR, bytes as received."""
    file_header: BatchHeader | None
    batch_header: BatchHeader | None
    delimiters: Delimiters
    declared_count: int | None
    """BTS-1 of the (last) batch, when present and numeric."""

    @property
    def control_id(self) -> str:
        """What identifies the batch to its sender: BHS-11, else FHS-11, else ``""``."""
        for header in (self.batch_header, self.file_header):
            if header is not None and header.control_id:
                return header.control_id
        return ""


def _lines(data: bytes) -> list[bytes]:
    raw = bytes(data).strip(b"\x00\x0b\x1c\r\n\t ")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    # As for single messages: CR is the separator; a payload without any CR is split on LF.
    parts = raw.replace(b"\r\n", b"\r").split(b"\r") if b"\r" in raw else raw.split(b"\n")
    return [p.strip(b"\x00\n\t ") for p in parts if p.strip(b"\x00\n\t ")]


def is_batch(data: bytes) -> bool:
    """True for a payload that starts with FHS or BHS: the batch protocol's own marker.

    A frame with several MSH and no header is *not* treated as a batch by the listener (its sender did
    not ask for batch handling and may not read a response batch); it is refused with a reason.
    :func:`messages_in` still splits such files.
    """
    lines = _lines(data)
    return bool(lines) and lines[0][:3] in _HEADERS


def messages_in(data: bytes) -> list[bytes]:
    """The messages of a batch, or of a payload holding several MSH with no header, or ``[data]``."""
    lines = _lines(data)
    if is_batch(data) or sum(1 for line in lines if line.startswith(b"MSH")) > 1:
        return list(parse_batch(data).messages)
    return [data]


def parse_batch(data: bytes, *, allow_empty: bool = False) -> Batch:
    """Split a batch into its messages. Raises :class:`ParseError` when it is malformed or (unless
    ``allow_empty``: a response batch on the exception basis may be empty) holds no message."""
    lines = _lines(data)
    file_header: BatchHeader | None = None
    batch_header: BatchHeader | None = None
    delims = STANDARD
    messages: list[list[bytes]] = []
    declared: int | None = None
    for line in lines:
        name = line[:3]
        if name in _HEADERS:
            header, delims = _header(line)
            if name == b"FHS":
                file_header = header
            elif batch_header is None:
                batch_header = header
            continue
        if name in _TRAILERS:
            if name == b"BTS":
                declared = _count(line, delims)
            messages.append([])  # closes the current message
            continue
        if name == b"MSH":
            messages.append([line])
        elif messages and messages[-1]:
            messages[-1].append(line)
        else:
            raise ParseError(
                f"batch segment {name.decode('ascii', 'replace')} is outside any message",
                hl7_error_code="100",
            )
    found = tuple(b"\r".join(m) + b"\r" for m in messages if m)
    if not found and not (allow_empty and (file_header or batch_header)):
        raise ParseError("batch holds no message (no MSH segment)", hl7_error_code="100")
    return Batch(found, file_header, batch_header, delims, declared)


def _header(line: bytes) -> tuple[BatchHeader, Delimiters]:
    if len(line) < 8:
        raise ParseError(f"{line[:3].decode('ascii', 'replace')} segment is truncated")
    text = line.decode("latin-1")
    fs = text[3]
    parts = text.split(fs)
    enc = parts[1] if len(parts) > 1 else ""
    try:
        delims = Delimiters.from_msh(fs, enc[:4])
    except ValueError as exc:
        raise ParseError(f"{text[:3]}-2: {exc}", location=f"{text[:3]}-2") from None

    def first(number: int) -> str:
        index = number - 1
        value = parts[index] if index < len(parts) else ""
        return value.split(delims.component)[0].strip()

    header = BatchHeader(
        segment=text[:3],
        encoding_characters=enc[:5] if len(enc) == 5 else delims.encoding_characters,
        sending_application=first(3),
        sending_facility=first(4),
        receiving_application=first(5),
        receiving_facility=first(6),
        control_id=first(11),
    )
    return header, delims


def _count(line: bytes, delims: Delimiters) -> int | None:
    parts = line.decode("latin-1").split(delims.field)
    value = parts[1].strip() if len(parts) > 1 else ""
    return int(value) if value.isdigit() else None


def build_batch_ack(
    batch: Batch,
    acks: Sequence[bytes],
    *,
    sender: Party,
    clock: Clock = system_clock,
    control_ids: ControlIdSource = random_control_ids,
    tz: tzinfo = UTC,
) -> bytes:
    """The response batch: [FHS] BHS, the ACKs as given (each CR-terminated), BTS count [FTS].

    BHS-12 (reference batch control id) is the sender's BHS-11; FHS-12 its FHS-11. The delimiters are the
    batch's own. ``acks`` are already-built ACK payloads (in their messages' versions).
    """
    d = batch.delimiters
    fs = d.field
    ts = format_ts(clock(), tz)
    them = batch.batch_header or batch.file_header
    their_app = them.sending_application if them else ""
    their_fac = them.sending_facility if them else ""
    our_app = escape(sender.application, d)
    our_fac = escape(sender.facility, d)

    def header(name: str, reference: str) -> str:
        return (
            f"{name}{fs}{d.encoding_characters}{fs}{our_app}{fs}{our_fac}{fs}"
            f"{escape(their_app, d)}{fs}{escape(their_fac, d)}{fs}{ts}{fs * 4}"
            f"{escape(control_ids(), d)}{fs}{escape(reference, d)}"
        ).rstrip(fs)

    out: list[str] = []
    if batch.file_header is not None:
        out.append(header("FHS", batch.file_header.control_id))
    out.append(header("BHS", batch.batch_header.control_id if batch.batch_header else ""))
    text = "\r".join(out) + "\r"
    body = b"".join(a if a.endswith(b"\r") else a + b"\r" for a in acks)
    trailer = f"BTS{fs}{len(acks)}\r"
    if batch.file_header is not None:
        trailer += f"FTS{fs}1\r"
    return text.encode("ascii") + body + trailer.encode("ascii")


__all__ = [
    "Batch",
    "BatchHeader",
    "build_batch_ack",
    "is_batch",
    "messages_in",
    "parse_batch",
    "split_messages",
]
