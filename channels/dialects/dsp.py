"""The DSP row format used in DSR^Q01 answers (locations in both dialects, slots in qie-2.3).

DSP-3 is free display text whose content "has lost its semantic value" in the standard, so the row format is a
site contract. Ours, one row per DSP segment, values separated by ``;`` (``dsp_separator``)::

    LOC;<location id>;<name>;<address>;<modality>,<modality>,...
    SLOT;<slot id>;<location id>;<modality>;<start TS with offset>;<duration minutes>

Inside a value, ``%`` and the separator are percent-encoded (``%25``, ``%3B``; inside a list cell also the
list separator, ``%2C``), so any name or address survives; the HL7 escaping of DSP-3 itself (``\\F\\`` etc.) is applied on top by the segment writer. Rows with
another tag (headers, blank lines, a vendor banner) are ignored when reading.
"""

from __future__ import annotations

from collections.abc import Sequence

LOCATION_TAG = "LOC"
SLOT_TAG = "SLOT"


def _quote(value: str, specials: str) -> str:
    out = value.replace("%", "%25")
    for ch in specials:
        if ch != "%":
            out = out.replace(ch, f"%{ord(ch):02X}")
    return out


def _unquote(value: str) -> str:
    if "%" not in value:
        return value  # most cells (ids, codes, timestamps): nothing encoded
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "%" and i + 2 < len(value) and _is_hex(value[i + 1 : i + 3]):
            out.append(chr(int(value[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def encode_row(tag: str, values: Sequence[str | Sequence[str]], sep: str, list_sep: str) -> str:
    cells = [tag]
    for value in values:
        if isinstance(value, str):
            cells.append(_quote(value, sep))
        else:
            cells.append(list_sep.join(_quote(v, sep + list_sep) for v in value))
    return sep.join(cells)


def decode_row(text: str, tag: str, sep: str) -> list[str] | None:
    """Raw cells after the tag, or None when the row is not a ``tag`` row. Decode with :func:`cell`."""
    cells = text.strip().split(sep)
    if not cells or cells[0].strip().upper() != tag:
        return None
    return cells[1:]


def cell(raw: str) -> str:
    return _unquote(raw).strip()


def cell_list(raw: str, list_sep: str) -> tuple[str, ...]:
    return tuple(v for v in (_unquote(x).strip() for x in raw.split(list_sep)) if v)
