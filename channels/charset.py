"""MSH-18 character sets: bytes <-> str for one message.

Reading (``decode``): the declared MSH-18 wins. An *empty* MSH-18 means ASCII by the standard, but US v2.3
feeds routinely leave it empty and send Windows-1252 (accented names). We therefore read an empty MSH-18
tolerantly: strict UTF-8 if the bytes are valid UTF-8 (cp1252 text with accents is almost never valid UTF-8),
otherwise cp1252 with replacement characters. Undecodable bytes never fail a clinically valid message; the
result reports ``replaced=True`` so the daemon can count it.

Writing: we write exactly what MSH-18 declares. Characters the declared set cannot carry are
transliterated (accents stripped, smart quotes straightened) and anything left becomes ``?`` — better a
readable approximation than an encoding error that blocks an appointment notification.

Transliteration must happen per value, *before* escaping (``fit``, called by the segment writer):
compatibility forms such as U+FF5C FULLWIDTH VERTICAL LINE decompose to ASCII punctuation, and a ``|``
that appears after escaping is a real field separator at the peer (issue 11, item 1). ``encode`` of
a whole message is the last line of defence for text that bypassed ``fit``: there a character whose
transliteration would contain ASCII punctuation or a control character becomes ``?``, since any
punctuation may be one of the message's delimiters.
"""

from __future__ import annotations

import codecs
import unicodedata
from dataclasses import dataclass

# Table 0211 value -> Python codec. "UNICODE" (2.3-2.4) is UTF-8 in practice (HAPI maps it the same way).
_CODECS: dict[str, str] = {
    "": "ascii",
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
}

# MSH-18 values we are willing to *write*.
SUPPORTED = frozenset(_CODECS)


def codec_for(msh18: str) -> str:
    """Python codec name for an MSH-18 value; raises ``ValueError`` for sets we cannot carry over MLLP."""
    key = msh18.strip().upper()
    try:
        return _CODECS[key]
    except KeyError:
        raise ValueError(f"unsupported MSH-18 character set {msh18!r}") from None


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    codec: str
    replaced: bool


def decode(data: bytes, msh18: str) -> Decoded:
    """Decode a whole message given its (already extracted) MSH-18 value."""
    key = msh18.strip().upper()
    if key in ("", "ASCII"):
        try:
            return Decoded(data.decode("ascii"), "ascii", replaced=False)
        except UnicodeDecodeError:
            pass
        try:
            return Decoded(data.decode("utf-8"), "utf-8", replaced=False)
        except UnicodeDecodeError:
            return _lenient(data, "cp1252")
    codec = _CODECS.get(key)
    if codec is None:
        # Unknown set (e.g. a repeated MSH-18, ISO IR87): fall back like HAPI does, but never raise.
        return decode(data, "")
    try:
        return Decoded(data.decode(codec), codec, replaced=False)
    except UnicodeDecodeError:
        return _lenient(data, codec)


def _lenient(data: bytes, codec: str) -> Decoded:
    return Decoded(data.decode(codec, errors="replace"), codec, replaced=True)


def encode(text: str, msh18: str) -> bytes:
    """Encode an outbound message in the set its MSH-18 declares.

    Values should already have been through ``fit``; whatever still does not fit is transliterated
    only to letters, digits and spaces (never to a possible delimiter), else ``?``.
    """
    codec = codec_for(msh18)
    try:
        return text.encode(codec)
    except UnicodeEncodeError:
        return transliterate(text, codec, structural=True).encode(codec, errors="replace")


def fit(value: str, codec: str) -> str:
    """One leaf value made encodable in ``codec``, before it is escaped (see the module docstring)."""
    try:
        value.encode(codec)
    except UnicodeEncodeError:
        return transliterate(value, codec)
    return value


_PUNCTUATION = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\u00a0": " ",
    }
)


def _structurally_inert(text: str) -> bool:
    """Only letters, digits and spaces: nothing that could be a delimiter, an escape or a control."""
    return all(c.isalnum() or c == " " for c in text)


def transliterate(text: str, codec: str, *, structural: bool = False) -> str:
    """Best readable approximation of ``text`` in ``codec`` (used for names like "José" on ASCII links).

    ``structural=True`` is for text whose delimiters are already in place: a replacement that is
    not purely letters, digits and spaces becomes ``?`` instead.
    """
    out: list[str] = []
    for ch in text:
        try:
            ch.encode(codec)
        except UnicodeEncodeError:
            base = ch.translate(_PUNCTUATION)
            if base == ch:
                base = "".join(
                    c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
                )
            try:
                base.encode(codec)
            except UnicodeEncodeError:
                base = "?"
            if structural and not _structurally_inert(base):
                base = "?"
            out.append(base or "?")
        else:
            out.append(ch)
    return "".join(out)


def is_known(msh18: str) -> bool:
    return msh18.strip().upper() in _CODECS


__all__ = [
    "SUPPORTED",
    "Decoded",
    "codec_for",
    "decode",
    "encode",
    "fit",
    "is_known",
    "transliterate",
]

# Sanity check at import: every codec name above must exist in this Python.
for _c in set(_CODECS.values()):
    codecs.lookup(_c)
