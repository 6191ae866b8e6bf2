"""HL7 v2 escape sequences (chapter 2, "Use of escape sequences in text fields").

Rules applied here, and why:

* Escaping is done per leaf value (component or subcomponent) *after* the structure is decided, and unescaping
  only after splitting; escaping first would let ``\\F\\`` be split again.
* The delimiters are those of the message being written or read (MSH-1/MSH-2), never hard-coded ``|^~\\&``.
* Line breaks: HL7 has two spellings. In FT fields (NTE-3) the formatting command ``\\.br\\`` is the standard,
  widely rendered line break, so FT values are written with :data:`LineBreaks.FORMATTED` (CR, LF and CRLF all
  become ``\\.br\\``, which reads back as ``\\n``). Every other field uses :data:`LineBreaks.HEX`: CR and LF are
  written as ``\\X0D\\`` / ``\\X0A\\``, which is lossless and valid from v2.3 on. A raw CR would end the
  segment and a raw LF is not a legal MLLP payload byte, so neither is ever emitted.
* Other C0 controls (TAB, NUL, 0x0B, 0x1C, ...) and DEL are written as hex escapes too, so nothing that could
  break MLLP framing ever reaches the wire, and the original text still round-trips.
* Unescaping is tolerant: an unknown or unterminated escape is kept as literal text rather than raising, because
  a clinically valid order must not be refused over a stray backslash.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The five delimiters of one message: MSH-1 and the four characters of MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as written on the wire."""
        return self.component + self.repetition + self.escape + self.subcomponent

    @classmethod
    def from_msh(cls, field_separator: str, encoding_characters: str) -> Delimiters:
        """Build from MSH-1 and MSH-2; MSH-2 may legally be shorter than 4 characters in old feeds."""
        enc = encoding_characters
        delims = cls(
            field=field_separator,
            component=enc[0] if len(enc) > 0 else "^",
            repetition=enc[1] if len(enc) > 1 else "~",
            escape=enc[2] if len(enc) > 2 else "\\",
            subcomponent=enc[3] if len(enc) > 3 else "&",
        )
        chars = [
            delims.field,
            delims.component,
            delims.repetition,
            delims.escape,
            delims.subcomponent,
        ]
        if len(set(chars)) != 5 or any(c.isalnum() or c in "\r\n " for c in chars):
            raise ValueError("MSH-1/MSH-2 delimiters must be five distinct punctuation characters")
        return delims


STANDARD = Delimiters()


class LineBreaks(enum.Enum):
    """How line breaks in a value are written (see the module docstring)."""

    HEX = "hex"
    FORMATTED = "formatted"


_NEWLINE = re.compile(r"\r\n|\r|\n")


@functools.lru_cache(maxsize=64)
def _escaper(delims: Delimiters, line_breaks: LineBreaks) -> tuple[re.Pattern[str], dict[str, str]]:
    """A pattern matching every character that needs escaping, and what each becomes.

    Built once per delimiter set: most values contain nothing to escape, and a single regex
    search answers that in C instead of a Python loop over every character.
    """
    e = delims.escape
    table = {
        delims.escape: f"{e}E{e}",
        delims.field: f"{e}F{e}",
        delims.component: f"{e}S{e}",
        delims.subcomponent: f"{e}T{e}",
        delims.repetition: f"{e}R{e}",
    }
    for code in (*range(0x20), 0x7F):
        table.setdefault(chr(code), f"{e}X{code:02X}{e}")
    if line_breaks is LineBreaks.FORMATTED:
        table["\n"] = f"{e}.br{e}"
    pattern = re.compile("[" + "".join(re.escape(ch) for ch in table) + "]")
    return pattern, table


# The escaper last used, per line-break style (HEX, FORMATTED).
_LAST: list[tuple[Delimiters, re.Pattern[str], dict[str, str]] | None] = [None, None]


def _current_escaper(
    delims: Delimiters, line_breaks: LineBreaks
) -> tuple[Delimiters, re.Pattern[str], dict[str, str]]:
    # Looked up by identity first: hashing the Delimiters dataclass for the lru_cache costs more than the
    # search itself, and a message's leaves all share one Delimiters object.
    index = 0 if line_breaks is LineBreaks.HEX else 1
    entry = _LAST[index]
    if entry is None or entry[0] is not delims:
        entry = _LAST[index] = (delims, *_escaper(delims, line_breaks))
    return entry


def special_characters(delims: Delimiters) -> re.Pattern[str]:
    """A pattern matching every character :func:`escape` would change (the same for both line-break
    styles): a value it does not match is written as it is."""
    return _current_escaper(delims, LineBreaks.HEX)[1]


def escape(
    text: str, delims: Delimiters = STANDARD, line_breaks: LineBreaks = LineBreaks.HEX
) -> str:
    """Return ``text`` with every delimiter and control character escaped for use as one leaf value."""
    if text.isalnum() or not text:
        return text  # most leaves (ids, codes, numbers): no delimiter, no control character
    if line_breaks is LineBreaks.FORMATTED:
        text = _NEWLINE.sub("\n", text)
    _, pattern, table = _current_escaper(delims, line_breaks)
    if pattern.search(text) is None:
        return text
    return pattern.sub(lambda m: table[m.group()], text)


def unescape(text: str, delims: Delimiters = STANDARD, charset: str = "latin-1") -> str:
    """Return the value ``text`` with escape sequences resolved.

    ``charset`` is the Python codec of the message; ``\\Xhh..\\`` hex data is bytes in that character set.
    """
    e = delims.escape
    if e not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != e:
            out.append(ch)
            i += 1
            continue
        end = text.find(e, i + 1)
        if end == -1:
            # Unterminated: keep the rest literally (tolerant reading).
            out.append(text[i:])
            break
        seq = text[i + 1 : end]
        resolved = _resolve(seq, delims, charset)
        if resolved is None:
            out.append(text[i : end + 1])
        else:
            out.append(resolved)
        i = end + 1
    return "".join(out)


_SIMPLE = {"F": "field", "S": "component", "T": "subcomponent", "R": "repetition", "E": "escape"}
_HEX = re.compile(r"[0-9A-Fa-f]+")


def _resolve(seq: str, delims: Delimiters, charset: str) -> str | None:
    """Meaning of one escape sequence body, or None to keep it literally."""
    attr = _SIMPLE.get(seq)
    if attr is not None:
        value: str = getattr(delims, attr)
        return value
    if seq in ("H", "N"):
        return ""  # highlighting on/off carries no text
    if seq.startswith("X") and len(seq) > 1 and len(seq) % 2 == 1 and _HEX.fullmatch(seq[1:]):
        raw = bytes.fromhex(seq[1:])
        try:
            return raw.decode(charset)
        except (UnicodeDecodeError, LookupError):
            return raw.decode("latin-1")
    if seq == ".br" or seq.startswith(".sp"):
        return "\n"
    if seq[:3] in (".in", ".ti", ".sk") or seq in (".fi", ".nf", ".ce"):
        return ""  # layout commands: no text content
    if seq[:1] in ("C", "M") and _HEX.fullmatch(seq[1:] or "x"):
        return ""  # ISO 2022 character set switches are not supported; drop the marker
    return None
