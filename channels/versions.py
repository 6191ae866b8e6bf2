"""What changes between HL7 v2.1 and v2.8 in the parts we write: one table, read by every builder.

The facts come from the machine-readable definitions shipped in hl7apy (``hl7apy/v2_x/segments.py`` and
``base_datatypes.py``), which our tests validate against, cross-checked with the HL7 chapter 2 texts:

* MSH-9 has the message structure as its 3rd component from 2.4 (2.3.1 allows it; many 2.3.1 receivers
  reject it). It is required from 2.7.
* MSH-15/16 (enhanced acknowledgement mode) exist from 2.2; MSH-18 (character set) from 2.3.
* MSH-2 may carry a 5th encoding character, the truncation character (``#``), from 2.7.
* MSH-3..6 are ST in 2.1/2.2 and HD from 2.3, whose first component (namespace, IS) is at most 20
  characters; ST is at most 199 (hl7apy's limit, and MSH-10's length from 2.7).
* MSA-3 (text message) is withdrawn in 2.7: the text goes into ERR-8 only.
* ERR: 2.1 has a single ID field that cannot carry a location and code (so we send none; MSA-3 has the
  text); 2.2-2.4 have ERR-1 (``seg^seq^field^code&text&HL70357``); from 2.5 ERR-2 location, ERR-3 code,
  ERR-4 severity and ERR-8 user message, with ERR-1 kept only for backward compatibility (we leave it
  empty; it is withdrawn in 2.7).
* TS in 2.1 has a required degree-of-precision component (``20250114101500^S``) in hl7apy's tables.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import Enum

KNOWN_VERSIONS = (
    "2.1",
    "2.2",
    "2.3",
    "2.3.1",
    "2.4",
    "2.5",
    "2.5.1",
    "2.6",
    "2.7",
    "2.7.1",
    "2.8",
    "2.8.1",
    "2.8.2",
)
"""Table 0104 values from 2.1 to 2.8.2: every version we read and answer in."""

ST_MAX = 199
IS_MAX = 20
MSA_TEXT_MAX = 80
"""MSA-3 is ST(80) in 2.1-2.6; longer texts are cut so strict receivers do not reject our ACK."""


class ErrForm(Enum):
    NONE = "none"  # 2.1: no ERR that can carry a code and location
    ELD = "eld"  # 2.2-2.4: ERR-1 = seg^seq^field^code&text&HL70357
    ERL = "erl"  # 2.5+: ERR-2..8


@dataclass(frozen=True, slots=True)
class VersionRules:
    version: str
    """MSH-12 as we write it (the sender's value without surrounding spaces)."""
    number: tuple[int, ...]
    known: bool
    """In table 0104 from 2.1 to 2.8.2."""

    @property
    def msh9_structure(self) -> bool:
        return self.number >= (2, 4)

    @property
    def has_ack_mode_fields(self) -> bool:
        return self.number >= (2, 2)

    @property
    def has_charset_field(self) -> bool:
        return self.number >= (2, 3)

    @property
    def has_truncation_character(self) -> bool:
        return self.number >= (2, 7)

    @property
    def msa_text(self) -> bool:
        return self.number < (2, 7)

    @property
    def err_form(self) -> ErrForm:
        if self.number < (2, 2):
            return ErrForm.NONE
        if self.number < (2, 5):
            return ErrForm.ELD
        return ErrForm.ERL

    @property
    def ts_precision(self) -> bool:
        return self.number < (2, 2)

    @property
    def party_limit(self) -> int:
        """Longest first component of MSH-3..6: ST in 2.1/2.2, HD's IS namespace from 2.3."""
        return ST_MAX if self.number < (2, 3) else IS_MAX

    @property
    def control_id_limit(self) -> int:
        """MSH-10 / MSA-2. The standard says 20 up to 2.6, but UUIDs (36) and longer ids are common in
        real feeds and every engine we know copies them; 199 (ST, and MSH-10 from 2.7) is the hard limit."""
        return ST_MAX


def version_number(version: str) -> tuple[int, ...]:
    """``"2.5.1"`` -> ``(2, 5, 1)``; ``()`` when unreadable."""
    parts: list[int] = []
    for piece in version.strip().split("."):
        # isdigit() is true for "¹" and other non-ASCII digits that int() rejects.
        if not (piece.isascii() and piece.isdigit()):
            return ()
        parts.append(int(piece))
    return tuple(parts) if len(parts) >= 2 else ()


@functools.lru_cache(maxsize=64)
def rules_for(version: str, default: str = "2.3") -> VersionRules:
    """The rules of ``version``; an unreadable one answers as ``default``."""
    text = version.strip()
    number = version_number(text)
    if not number:
        text, number = default, version_number(default)
    return VersionRules(text, number, text in KNOWN_VERSIONS)


def is_known(version: str) -> bool:
    return version.strip() in KNOWN_VERSIONS


__all__ = [
    "IS_MAX",
    "KNOWN_VERSIONS",
    "MSA_TEXT_MAX",
    "ST_MAX",
    "ErrForm",
    "VersionRules",
    "is_known",
    "rules_for",
    "version_number",
]
