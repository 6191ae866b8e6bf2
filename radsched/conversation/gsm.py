"""GSM 03.38 (GSM-7) accounting: how many segments a text costs, and making values GSM-safe.

One character outside the GSM-7 basic and extension tables switches the *whole* message to
UCS-2 with a 70-unit limit (reference/sms.md section 1.6), so this is checked, not guessed.
Every template must fit one segment: the TCPA healthcare exemption's 160-character rule and
per-segment billing both point the same way.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass

__all__ = [
    "GSM_BASIC",
    "GSM_EXTENSION",
    "GSM_SINGLE_SEGMENT",
    "UCS2_SINGLE_SEGMENT",
    "Encoding",
    "SegmentInfo",
    "segment_info",
    "to_gsm_value",
]

# The basic table without ESC (0x1B), which only introduces the extension table and never
# appears in text we write.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Each costs two septets (ESC + char). Form feed is in the table too but has no place in a text.
GSM_EXTENSION = frozenset("^{}\\[~]|€")

GSM_SINGLE_SEGMENT = 160  # septets
UCS2_SINGLE_SEGMENT = 70  # UTF-16 code units


class Encoding(enum.StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """How a carrier will encode a text. ``units`` is septets for GSM-7, UTF-16 units for UCS-2."""

    encoding: Encoding
    units: int

    @property
    def limit(self) -> int:
        return GSM_SINGLE_SEGMENT if self.encoding is Encoding.GSM7 else UCS2_SINGLE_SEGMENT

    @property
    def single_segment(self) -> bool:
        return self.units <= self.limit

    @property
    def segments(self) -> int:
        if self.single_segment:
            return 1
        # A split message loses room to the 6-byte concatenation header in each part.
        per_part = 153 if self.encoding is Encoding.GSM7 else 67
        return -(-self.units // per_part)


def segment_info(text: str) -> SegmentInfo:
    """Encoding and size of ``text`` as sent by Twilio without Smart Encoding."""
    septets = 0
    for char in text:
        if char in GSM_BASIC:
            septets += 1
        elif char in GSM_EXTENSION:
            septets += 2
        else:
            # Astral characters (emoji) are surrogate pairs: two code units each.
            return SegmentInfo(Encoding.UCS2, len(text.encode("utf-16-le")) // 2)
    return SegmentInfo(Encoding.GSM7, septets)


# Look-alikes for characters that RIS data and word processors love. Extension characters are
# mapped down too, so that a sanitised value always costs exactly one septet per character:
# that is what makes the worst-case template check (length x 1 septet) sound.
_REPLACEMENTS = {
    "‘": "'",
    "’": "'",
    "‚": "'",
    "`": "'",
    "´": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "–": "-",
    "—": "-",
    "‐": "-",
    "−": "-",
    "…": ".",
    "•": "-",
    "[": "(",
    "]": ")",
    "{": "(",
    "}": ")",
    "~": "-",
    "|": "/",
    "\\": "/",
    "^": "'",
    "€": "E",
    "\n": " ",
    "\r": " ",
    "\t": " ",
}


def to_gsm_value(value: str, max_len: int) -> str:
    """Make an untrusted value (a location name from the RIS) safe to put into a template.

    The result uses only GSM-7 *basic* characters, has no line breaks (a value must not be able
    to forge menu lines), collapses runs of spaces and is cut to ``max_len`` characters.
    Accented letters missing from GSM-7 (á í ó ú …) lose their accent rather than flipping the
    whole text to UCS-2.
    """
    out: list[str] = []
    for original in value:
        char = _REPLACEMENTS.get(original, original)
        if char not in GSM_BASIC:
            decomposed = unicodedata.normalize("NFKD", char)
            kept = "".join(c for c in decomposed if c in GSM_BASIC and c not in "\r\n")
            # An unknown symbol becomes a space (words stay apart); a lone accent vanishes.
            char = kept or ("" if unicodedata.combining(decomposed[:1] or " ") else " ")
        out.append(char)
    text = " ".join("".join(out).split())
    return text[:max_len].rstrip()
