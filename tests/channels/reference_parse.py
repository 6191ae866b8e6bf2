"""The parser before issue 16's fast path, kept verbatim as the reference the fast one is checked against
(``test_fast_paths.py``): same segments and fields, same header facts, same ParseError for every input.
The opening checks and the delimiter validation, which the fast path did not change, are shared."""

from __future__ import annotations

import re
from collections.abc import Iterator

from channels import charset as _charset
from channels.errors import ParseError
from channels.escaping import Delimiters
from channels.message import Message, Segment, _opening, _read_delimiters

_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")


def reference_parse(data: bytes) -> Message:
    """Parse one message. Raises :class:`ParseError` (and nothing else) for any unreadable input."""
    raw, fs_byte = _opening(data)
    header_end = min((i for i in (raw.find(b"\r"), raw.find(b"\n")) if i != -1), default=len(raw))
    header = raw[:header_end].split(fs_byte)
    enc_bytes = header[1] if len(header) > 1 else b""
    delims = _read_delimiters(fs_byte, enc_bytes)
    msh18 = _first_value(header[17], delims) if len(header) > 17 else ""
    decoded = _charset.decode(raw, msh18)
    segments = tuple(_split_segments(decoded.text, delims, decoded.codec))
    if segments and segments[0].name == "MSH":
        return Message(segments, delims, msh18, decoded.codec, decoded.replaced)
    raise ParseError("message does not start with an MSH segment", location="MSH")


def _first_value(field: bytes, delims: Delimiters) -> str:
    text = field.decode("ascii", errors="replace")
    return text.split(delims.repetition)[0].split(delims.component)[0].strip()


def _split_segments(text: str, delims: Delimiters, codec: str) -> Iterator[Segment]:
    lines = text.replace("\r\n", "\r").split("\r") if "\r" in text else text.split("\n")
    fs = delims.field
    for index, raw_line in enumerate(lines, start=1):
        line = raw_line.strip("\x00\n\t ")
        if not line:
            continue
        parts = line.split(fs)
        name = parts[0]
        if not _SEGMENT_NAME.fullmatch(name):
            raise ParseError(f"segment {index} has no valid three-character segment ID")
        if name == "MSH":
            if index != 1 and not _is_first_nonblank(lines, index):
                raise ParseError("a second MSH segment was found; send one message per frame")
            fields = ("MSH", fs, *parts[1:])
        else:
            fields = tuple(parts)
        yield Segment(name, fields, delims, codec)


def _is_first_nonblank(lines: list[str], index: int) -> bool:
    return all(not line.strip("\x00\n\t ") for line in lines[: index - 1])
