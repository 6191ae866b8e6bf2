"""The HL7 v2 tree: reading bytes into segments/fields, and writing segments back to bytes.

This is the one place that knows the ER7 syntax. Everything above it (ACKs, orders, SIU, dialects) addresses
values by :class:`FieldPath` (``"AIL-3.4"``) and handles plain, unescaped Python strings.

Reading
    * Delimiters come from MSH-1/MSH-2 of *each* message.
    * Bytes are decoded per MSH-18 (see :mod:`channels.charset`) before splitting.
    * Segment separators: ``\\r`` is the standard. A message with no CR at all is split on LF/CRLF (files and
      vendor feeds that use ``\\n``). When CRs are present, CRLF becomes CR and a lone LF is data, because real
      messages carry LF inside NTE/OBX text (the reason deoxxa/hl7 and panates/hl7v2 reverted blind LF
      splitting). Blank lines, a missing final CR and trailing NUL/whitespace are tolerated.
    * Unknown and Z-segments are kept as they are; nothing here rejects a segment for being unexpected.

Writing
    * Every leaf is escaped with the delimiters of the message being written; ``\\r`` ends every segment.
    * Trailing empty fields/components are dropped (``PID|1||X`` not ``PID|1||X|||``).

(The ``hl7`` package is deliberately not used here: its ``unescape`` drops ``\\.br\\`` and hex data and its tree
shape varies between a string and a list depending on content, which made round-trip guarantees harder to
state than this ~300-line module.)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import charset as _charset
from .errors import ParseError
from .escaping import STANDARD, Delimiters, LineBreaks, escape, special_characters, unescape

_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
_PATH = re.compile(
    r"([A-Z][A-Z0-9]{2})-(\d{1,3})(?:\((\d{1,3})\))?(?:\.(\d{1,3}))?(?:\.(\d{1,3}))?"
)


@dataclass(frozen=True, slots=True)
class FieldPath:
    """Address of one value: ``SEG-field[(repetition)][.component[.subcomponent]]``, all 1-based.

    ``"AIL-3.4"`` is AIL-3 component 4; ``"PID-13(2).3"`` is the equipment type of the second PID-13 repetition.
    Used by the site overrides in :mod:`channels.dialects`.
    """

    segment: str
    field: int
    component: int = 1
    subcomponent: int = 1
    repetition: int = 1

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        m = _PATH.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"{text!r} is not a field path like 'AIL-3.4' or 'PID-13(2).3'")
        seg, fld, rep, comp, sub = m.groups()
        path = cls(seg, int(fld), int(comp or 1), int(sub or 1), int(rep or 1))
        if min(path.field, path.component, path.subcomponent, path.repetition) < 1:
            raise ValueError(f"{text!r}: positions are 1-based")
        if seg == "MSH" and path.field <= 2:
            raise ValueError(f"{text!r}: MSH-1/MSH-2 are the delimiters, not a value")
        return path

    def __str__(self) -> str:
        rep = f"({self.repetition})" if self.repetition != 1 else ""
        text = f"{self.segment}-{self.field}{rep}"
        if self.component != 1 or self.subcomponent != 1:
            text += f".{self.component}"
        if self.subcomponent != 1:
            text += f".{self.subcomponent}"
        return text


# --------------------------------------------------------------------------------------------------------------
# Reading


class Segment:
    """One parsed segment. ``fields[n]`` is the raw (still escaped) text of field n; ``fields[0]`` is the name.

    A segment read by :func:`parse` keeps its line and splits it into fields the first time they are
    read (issue 16): the ACK path reads only MSH, so the other segments are never split there.
    """

    __slots__ = ("_codec", "_delims", "_fields", "_line", "name")

    def __init__(
        self,
        name: str,
        fields: tuple[str, ...] | None,
        delims: Delimiters,
        codec: str,
        line: str = "",
    ) -> None:
        self.name = name
        self._fields = fields
        self._line = line
        self._delims = delims
        self._codec = codec

    @property
    def fields(self) -> tuple[str, ...]:
        fields = self._fields
        if fields is None:
            fields = self._fields = tuple(self._line.split(self._delims.field))
            self._line = ""  # the fields hold it now
        return fields

    def __repr__(self) -> str:
        return f"<Segment {self.name} ({len(self.fields) - 1} fields)>"

    @property
    def field_count(self) -> int:
        return len(self.fields) - 1

    def raw(self, field: int) -> str:
        """Raw text of a field (all repetitions), ``""`` when absent."""
        return self.fields[field] if 0 <= field < len(self.fields) else ""

    def repetition_count(self, field: int) -> int:
        raw = self.raw(field)
        if not raw or self._is_msh_header_field(field):
            return 1 if raw else 0
        return len(raw.split(self._delims.repetition))

    def _is_msh_header_field(self, field: int) -> bool:
        return self.name == "MSH" and field <= 2

    def _raw_components(self, field: int, repetition: int) -> list[str]:
        """Raw (escaped) components of one repetition of a field; ``[]`` when absent."""
        raw = self.raw(field)
        if not raw:
            return []
        reps = raw.split(self._delims.repetition)
        if repetition > len(reps):
            return []
        return reps[repetition - 1].split(self._delims.component)

    def get(
        self, field: int, component: int = 1, subcomponent: int = 1, repetition: int = 1
    ) -> str:
        """The unescaped value at one position, ``""`` when absent."""
        if self._is_msh_header_field(field):
            return self.raw(field)
        raw = self.raw(field)
        if raw.isalnum():
            # Most values read are one code or id (AA, SQR, OK): no delimiter (they are never
            # alphanumeric) and no escape, so the value is itself at position 1 and absent elsewhere.
            return raw if component == subcomponent == repetition == 1 else ""
        subs = self.subcomponents(field, component, repetition, unescaped=False)
        if subcomponent > len(subs):
            return ""
        return unescape(subs[subcomponent - 1], self._delims, self._codec)

    def at(self, path: FieldPath) -> str:
        return self.get(path.field, path.component, path.subcomponent, path.repetition)

    def components(self, field: int, repetition: int = 1) -> list[str]:
        """All components of one repetition, unescaped, with subcomponents left joined (raw ``&``)."""
        return [
            unescape(c, self._delims, self._codec) for c in self._raw_components(field, repetition)
        ]

    def subcomponents(
        self, field: int, component: int = 1, repetition: int = 1, *, unescaped: bool = True
    ) -> list[str]:
        comps = self._raw_components(field, repetition)
        if component > len(comps):
            return []
        subs = comps[component - 1].split(self._delims.subcomponent)
        return [unescape(x, self._delims, self._codec) for x in subs] if unescaped else subs

    def to_builder(self) -> SegmentBuilder:
        """An equivalent :class:`SegmentBuilder` (leaves unescaped), e.g. to re-emit a Z-segment."""
        builder = SegmentBuilder(self.name)
        d = self._delims
        first = 3 if self.name == "MSH" else 1
        for number in range(first, len(self.fields)):
            raw = self.fields[number]
            if not raw:
                continue
            builder._fields[number] = [
                [
                    [unescape(sub, d, self._codec) for sub in comp.split(d.subcomponent)]
                    for comp in rep.split(d.component)
                ]
                for rep in raw.split(d.repetition)
            ]
        return builder

    def text(self) -> str:
        """The segment as it was received (escaped), without terminator."""
        if self.name == "MSH":
            return (
                "MSH"
                + self.fields[1]
                + self.fields[2]
                + "".join(self.fields[1] + f for f in self.fields[3:])
            )
        return self._delims.field.join(self.fields)


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed message: segments in order plus what was learned from MSH."""

    segments: tuple[Segment, ...]
    delimiters: Delimiters
    charset: str
    """MSH-18 as received (first repetition), ``""`` when empty."""
    codec: str
    """The Python codec actually used to decode the bytes."""
    decode_replaced: bool
    """True when undecodable bytes were replaced (worth a metric, never a rejection)."""

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def control_id(self) -> str:
        return self.msh.get(10)

    @property
    def message_type(self) -> str:
        return self.msh.get(9, 1).upper()

    @property
    def trigger(self) -> str:
        return self.msh.get(9, 2).upper()

    @property
    def structure(self) -> str:
        return self.msh.get(9, 3).upper()

    @property
    def version(self) -> str:
        return self.msh.get(12, 1)

    @property
    def encoding_characters(self) -> str:
        """MSH-2 to answer with: the four delimiters, plus the truncation character (2.7+, usually ``#``)
        when the sender declared one. Anything else after the fourth character is ignored."""
        return self.delimiters.encoding_characters + truncation_character(
            self.msh.raw(2), self.delimiters
        )

    @property
    def truncation_character(self) -> str:
        """The 5th MSH-2 character, ``""`` when the sender declared none."""
        return self.encoding_characters[4:]

    @property
    def processing_id(self) -> str:
        return self.msh.get(11, 1)

    @property
    def sending_application(self) -> str:
        return self.msh.get(3, 1)

    @property
    def sending_facility(self) -> str:
        return self.msh.get(4, 1)

    @property
    def receiving_application(self) -> str:
        return self.msh.get(5, 1)

    @property
    def receiving_facility(self) -> str:
        return self.msh.get(6, 1)

    @property
    def accept_ack_type(self) -> str:
        return self.msh.get(15).upper()

    @property
    def application_ack_type(self) -> str:
        return self.msh.get(16).upper()

    def first(self, name: str) -> Segment | None:
        for seg in self.segments:
            if seg.name == name:
                return seg
        return None

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def require(self, name: str) -> Segment:
        seg = self.first(name)
        if seg is None:
            raise ParseError(
                f"{self.message_type}^{self.trigger} has no {name} segment", hl7_error_code="100"
            )
        return seg

    def groups(self, start: str, within: Sequence[Segment] | None = None) -> list[list[Segment]]:
        """Split ``within`` (default: all segments) into runs that each begin with a ``start`` segment."""
        out: list[list[Segment]] = []
        for seg in self.segments if within is None else within:
            if seg.name == start:
                out.append([seg])
            elif out:
                out[-1].append(seg)
        return out

    def value(self, path: FieldPath, within: Sequence[Segment] | None = None) -> str:
        """Value at ``path`` in the first matching segment of ``within`` (default: the whole message)."""
        for seg in self.segments if within is None else within:
            if seg.name == path.segment:
                return seg.at(path)
        return ""

    def text(self) -> str:
        """The message re-serialised with ``\\r`` terminators (escapes preserved)."""
        return "".join(s.text() + "\r" for s in self.segments)


def truncation_character(msh2: str, delims: Delimiters) -> str:
    """The 5th character of MSH-2 as written when it is a usable truncation character, else ``""``."""
    if len(msh2) == 5 and msh2[:4] == delims.encoding_characters:
        extra = msh2[4]
        if extra.isascii() and not extra.isalnum() and extra not in msh2[:4] + delims.field + " ":
            return extra
    return ""


_BOM = b"\xef\xbb\xbf"
_LEADING_JUNK = b"\x00\x0b\x1c\r\n\t "


def parse(data: bytes) -> Message:
    """Parse one message. Raises :class:`ParseError` (and nothing else) for any unreadable input."""
    raw, fs_byte = _opening(data)
    # The header ends at the first CR or LF, whichever comes first.
    cr = raw.find(b"\r")
    lf = raw.find(b"\n", 0, cr) if cr >= 0 else raw.find(b"\n")
    header_end = lf if lf >= 0 else cr if cr >= 0 else len(raw)
    header = raw[:header_end].split(fs_byte)
    enc_bytes = header[1] if len(header) > 1 else b""
    delims = _DELIMITERS.get(fs_byte + enc_bytes)
    if delims is None:
        delims = _delimiters(fs_byte, enc_bytes)
    msh18 = _first_value(header[17], delims) if len(header) > 17 else ""
    if msh18:
        decoded = _charset.decode(raw, msh18)
        text, codec, replaced = decoded.text, decoded.codec, decoded.replaced
    else:
        # What charset.decode does for an empty MSH-18, with its common case inlined.
        try:
            text, codec, replaced = raw.decode("ascii"), "ascii", False
        except UnicodeDecodeError:
            decoded = _charset.decode(raw, msh18)
            text, codec, replaced = decoded.text, decoded.codec, decoded.replaced
    segments = _split_segments(text, delims, codec)
    if not segments or segments[0].name != "MSH":
        raise ParseError("message does not start with an MSH segment", location="MSH")
    # Positional: a frozen dataclass's __init__ called with keywords costs twice as much.
    return Message(segments, delims, msh18, codec, replaced)


def _opening(data: bytes) -> tuple[bytes, bytes]:
    """The message without framing junk or BOM, and its MSH-1 byte, once both are checked."""
    if type(data) is not bytes:  # the exact type first: cheaper than isinstance of a union
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("parse() takes bytes")
        data = bytes(data)
    raw = data.strip(_LEADING_JUNK)
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    if not raw.startswith(b"MSH"):
        if raw[:3] in (b"FHS", b"BHS"):
            raise ParseError(
                "an HL7 batch (FHS/BHS) where one message was expected", location="MSH"
            )
        raise ParseError("message does not start with an MSH segment", location="MSH")
    if len(raw) < 8:
        raise ParseError("MSH segment is truncated", location="MSH")
    fs_byte = raw[3:4]
    if fs_byte[0] >= 0x80 or fs_byte in b"\r\n":
        raise ParseError(
            "MSH-1 field separator is not a printable ASCII character", location="MSH-1"
        )
    return raw, fs_byte


# MSH-1 + MSH-2 bytes -> their delimiters: a feed uses one set, so validation happens once.
_DELIMITERS: dict[bytes, Delimiters] = {}
_DELIMITERS_MAX = 256


def _delimiters(fs_byte: bytes, enc_bytes: bytes) -> Delimiters:
    delims = _read_delimiters(fs_byte, enc_bytes)
    if len(_DELIMITERS) >= _DELIMITERS_MAX:
        _DELIMITERS.clear()
    _DELIMITERS[fs_byte + enc_bytes] = delims
    return delims


def _read_delimiters(fs_byte: bytes, enc_bytes: bytes) -> Delimiters:
    if not enc_bytes or any(b >= 0x80 for b in enc_bytes):
        raise ParseError("MSH-2 encoding characters are missing", location="MSH-2")
    try:
        delims = Delimiters.from_msh(fs_byte.decode("ascii"), enc_bytes.decode("ascii")[:4])
    except ValueError as exc:
        raise ParseError(str(exc), location="MSH-2") from None
    return delims


def _first_value(field: bytes, delims: Delimiters) -> str:
    text = field.decode("ascii", errors="replace")
    return text.split(delims.repetition)[0].split(delims.component)[0].strip()


# Segment IDs already checked against _SEGMENT_NAME (at most 26 * 36 * 36 of them).
_VALID_NAMES: set[str] = set()


def _split_segments(text: str, delims: Delimiters, codec: str) -> tuple[Segment, ...]:
    lines = text.replace("\r\n", "\r").split("\r") if "\r" in text else text.split("\n")
    fs = delims.field
    valid = _VALID_NAMES
    out: list[Segment] = []
    for index, raw_line in enumerate(lines, start=1):
        line = raw_line.strip("\x00\n\t ")
        if not line:
            continue
        # The ID is what comes before the first field separator: exactly three characters.
        name = line[:3]
        longer = len(line) > 3 and line[3] != fs
        if longer or name not in valid:
            if longer or not _SEGMENT_NAME.fullmatch(name):
                raise ParseError(f"segment {index} has no valid three-character segment ID")
            valid.add(name)
        if name == "MSH":
            if index != 1 and not _is_first_nonblank(lines, index):
                raise ParseError("a second MSH segment was found; send one message per frame")
            out.append(Segment(name, ("MSH", fs, *line.split(fs)[1:]), delims, codec))
        else:
            out.append(Segment(name, None, delims, codec, line))
    return tuple(out)


def _is_first_nonblank(lines: list[str], index: int) -> bool:
    return all(not line.strip("\x00\n\t ") for line in lines[: index - 1])


# --------------------------------------------------------------------------------------------------------------
# Writing

Component = str | tuple[str, ...]
"""A component: a plain value, or a tuple of subcomponent values."""
FieldValue = Component | Sequence[Component] | list[tuple[Component, ...]]
"""A field: one component, a tuple of components, or a *list* of repetitions (each a tuple of components)."""


class SegmentBuilder:
    """A segment under construction. Values are plain text; escaping happens in :meth:`encode`.

    Storage is ``field -> repetitions -> components -> subcomponents`` so that a site override can put any
    value at any :class:`FieldPath` without the message-specific code knowing about it.
    """

    __slots__ = ("_fields", "formatted", "name")

    def __init__(self, name: str, *fields: FieldValue | None) -> None:
        if name not in _VALID_NAMES:
            if not _SEGMENT_NAME.fullmatch(name):
                raise ValueError(f"invalid segment name {name!r}")
            _VALID_NAMES.add(name)
        self.name = name
        self._fields: dict[int, list[list[list[str]]]] = {}
        # Fields of type FT get `\.br\` line breaks (see channels.escaping).
        self.formatted: set[int] = set()
        for number, value in enumerate(fields, 1):
            if value is not None:
                self.field(number, value)

    @classmethod
    def from_text(cls, text: str, delims: Delimiters = STANDARD) -> SegmentBuilder:
        """Build from one escaped ER7 segment line (not MSH)."""
        name = text.split(delims.field, 1)[0]
        seg = Segment(name, tuple(text.split(delims.field)), delims, "latin-1")
        return seg.to_builder()

    def field(self, number: int, value: FieldValue) -> SegmentBuilder:
        """Set a whole field: a string, a tuple of components, or a list of repetitions of those."""
        if value.__class__ is str:
            self._fields[number] = [[[value]]]
        elif isinstance(value, list):
            self._fields[number] = [_components(v) for v in value]
        else:
            self._fields[number] = [_components(value)]
        return self

    def set(self, path: FieldPath, value: str) -> SegmentBuilder:
        """Set one leaf value, growing repetitions/components as needed."""
        reps = self._fields.setdefault(path.field, [])
        while len(reps) < path.repetition:
            reps.append([[""]])
        comps = reps[path.repetition - 1]
        while len(comps) < path.component:
            comps.append([""])
        subs = comps[path.component - 1]
        while len(subs) < path.subcomponent:
            subs.append("")
        subs[path.subcomponent - 1] = value
        return self

    def get(self, path: FieldPath) -> str:
        try:
            return self._fields[path.field][path.repetition - 1][path.component - 1][
                path.subcomponent - 1
            ]
        except (KeyError, IndexError):
            return ""

    def encode(self, delims: Delimiters, codec_hint: str = "") -> str:
        """ER7 text of the segment; with ``codec_hint`` (a Python codec) each value is first made to
        fit that codec, so transliteration happens before escaping and never yields a delimiter."""
        codec = codec_hint or "utf-8"
        # A leaf that is ASCII (so already fits any codec that carries ASCII) and holds no delimiter and
        # no control character is written as it is: one isascii() and one regex search, in C, instead of
        # fit() and escape(). Everything else goes through them (the general path below).
        fast = _carries_ascii(codec)
        special = special_characters(delims).search
        fields = self._fields
        out: list[str] = []
        append = out.append
        for number in range(1, max(fields, default=0) + 1):
            reps = fields.get(number)
            if not reps:
                append("")
                continue
            # Most fields are one plain leaf: one repetition of one component of one subcomponent.
            if fast and len(reps) == 1:
                comps = reps[0]
                if len(comps) == 1 and len(comps[0]) == 1:
                    s = comps[0][0]
                    if s.isascii() and special(s) is None:
                        append(s)
                        continue
            breaks = LineBreaks.FORMATTED if number in self.formatted else LineBreaks.HEX
            append(_encode_field(reps, delims, codec, breaks, special if fast else None))
        while out and out[-1] == "":
            out.pop()
        return delims.field.join([self.name, *out])


def _encode_field(
    reps: list[list[list[str]]],
    delims: Delimiters,
    codec: str,
    breaks: LineBreaks,
    special: Callable[[str], object] | None,
) -> str:
    """One field's ER7 text. With ``special`` (the codec carries ASCII), a leaf it finds nothing in is
    plain and kept as it is; every other leaf is made to fit the codec and escaped."""
    comp_sep = delims.component
    sub_sep = delims.subcomponent
    rep_texts: list[str] = []
    for comps in reps:
        comp_texts: list[str] = []
        for subs in comps:
            leaves = [
                s
                if special is not None and s.isascii() and special(s) is None
                else escape(_charset.fit(s, codec), delims, breaks)
                for s in subs
            ]
            comp_texts.append(sub_sep.join(leaves))
        text = comp_texts[0] if len(comp_texts) == 1 else comp_sep.join(comp_texts)
        rep_texts.append(_trim(text, comp_sep) if text.endswith(comp_sep) else text)
    return rep_texts[0] if len(rep_texts) == 1 else delims.repetition.join(rep_texts)


@functools.lru_cache(maxsize=32)
def _carries_ascii(codec: str) -> bool:
    """Whether every ASCII character encodes in ``codec`` (then ``fit`` leaves ASCII text alone)."""
    try:
        bytes(range(128)).decode("ascii").encode(codec)
    except (UnicodeError, LookupError):
        return False  # the general path raises what it raised before for an unknown codec
    return True


def _components(value: Component | Sequence[Component]) -> list[list[str]]:
    if isinstance(value, str):
        return [[value]]
    return [[comp] if isinstance(comp, str) else list(comp) for comp in value]


def _trim(text: str, sep: str) -> str:
    """Drop trailing empty components so ``A^^`` is written ``A``."""
    if not sep:
        return text
    while text.endswith(sep):
        text = text[: -len(sep)]
    return text


def encode_message(
    msh_fields: Mapping[int, FieldValue],
    segments: Iterable[SegmentBuilder],
    *,
    delims: Delimiters = STANDARD,
    charset: str = "",
) -> bytes:
    """Serialise MSH (fields 3..n given as a mapping) plus the body segments, encoded per ``charset``."""
    msh = SegmentBuilder("MSH")
    for number, value in msh_fields.items():
        if number <= 2:
            raise ValueError("MSH-1/MSH-2 come from the delimiters")
        msh.field(number, value)
    if charset:
        msh.field(18, charset)
    # MSH-1/MSH-2 are left empty in the builder (so never escaped) and replaced by the delimiters here.
    fs = delims.field
    codec = _charset.codec_for(charset)
    encoded = msh.encode(delims, codec)
    empty_prefix = "MSH" + fs + fs + fs
    if not encoded.startswith(empty_prefix):
        raise ValueError("MSH needs at least MSH-3")
    msh_text = "MSH" + fs + delims.encoding_characters + fs + encoded[len(empty_prefix) :]
    text = msh_text + "\r" + "".join(s.encode(delims, codec) + "\r" for s in segments)
    return _charset.encode(text, charset)
