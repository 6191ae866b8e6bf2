"""Slot queries that repeat: encode each question once, and fill in what changes per message.

Two slot queries for the same question (location, modality, window, limit) differ only in their
control id (MSH-10, and the query and placer ids the dialect makes from it) and in the time they were
built (MSH-7, QRD-1). Writing the seven segments field by field, with every leaf checked for
characters to escape, is most of what building one costs. So the first query for a question is built
twice, with two pairs of stand-ins for the control id and the time, and the first build is kept as
its bytes with holes where its stand-ins were: the control id, its last ten characters (the query id
of QRD-4) and the time's text. The template is used only if filling its holes with the second pair
gives exactly the bytes the second build wrote, so a dialect or site override that uses the control
id or the time in any other way (a prefix, a date alone, an escaped form) is caught then, and that
question goes on being built field by field. A control id or time whose text is not plain ASCII free
of delimiters (it would be escaped or re-encoded) is also built field by field. The bytes are the
same either way; tests hold the two paths to that.

Questions carry no patient data (locations, modalities, days), so nothing here is PHI.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from datetime import UTC, datetime

from ..escaping import STANDARD, special_characters

#: Distinct questions kept (a location, modality and day each); the oldest goes first.
DEFAULT_SIZE = 256

#: QRD-4 is ST(10) in 2.3, so the dialects put the control id's last ten characters there.
QUERY_ID_LEN = 10

#: ``build(control_id, now) -> payload``: one query for the question, field by field.
Build = Callable[[str, datetime], bytes]

# Two stand-ins that differ at every position, so a value derived from one (a prefix, a slice) is
# told apart from the other's; their ten-character tails differ from each other's heads too.
_STAND_IN_IDS = ("QTA0B1C2D3E4F5G6H7J8", "XK9L8M7N6P5R4S3T2V1W")
# Two instants whose texts differ at every digit of YYYYMMDDHHMMSS.
_STAND_IN_TIMES = (
    datetime(1987, 6, 15, 13, 24, 31, tzinfo=UTC),
    datetime(2010, 12, 28, 1, 43, 52, tzinfo=UTC),
)

_plain = special_characters(STANDARD).search

# The holes of a template, in the order ``_Template.fill`` takes their values.
_ID, _QUERY_ID, _TIME = 0, 1, 2


class _Template:
    """A query's bytes as literal pieces with holes between them."""

    __slots__ = ("holes", "pieces")

    def __init__(self, pieces: tuple[bytes, ...], holes: tuple[int, ...]) -> None:
        self.pieces = pieces  # len(holes) + 1 of them
        self.holes = holes

    @classmethod
    def cut(cls, payload: bytes, control_id: str, time_text: str) -> _Template | None:
        """The template of ``payload`` built with ``control_id`` and ``time_text``, or None if a stand-in
        is missing from it (the build did not use it as it is)."""
        values = _values(control_id, time_text)
        # The whole id is tried before its tail (the query id), which it contains.
        parts = re.split(b"(" + b"|".join(map(re.escape, values)) + b")", payload)
        holes = tuple(values.index(found) for found in parts[1::2])
        if _ID not in holes or _TIME not in holes:
            return None
        return cls(tuple(parts[::2]), holes)

    def fill(self, control_id: str, time_text: str) -> bytes:
        values = _values(control_id, time_text)
        pieces = self.pieces
        out = [pieces[0]]
        for n, hole in enumerate(self.holes, 1):
            out.append(values[hole])
            out.append(pieces[n])
        return b"".join(out)


def _values(control_id: str, time_text: str) -> tuple[bytes, bytes, bytes]:
    """What goes into the holes ``_ID``, ``_QUERY_ID`` and ``_TIME``."""
    return control_id.encode(), control_id[-QUERY_ID_LEN:].encode(), time_text.encode()


def _is_plain(text: str) -> bool:
    """Written as it is by the encoder in any charset that carries ASCII (its own test for a leaf, in
    SegmentBuilder.encode): no escaping, no re-encoding."""
    return text.isascii() and _plain(text) is None


class QueryTemplates:
    """The templates of the last ``size`` questions (0 keeps none: every query is built in full).

    ``time_text(now)`` is how the dialect writes a time (MSH-7, QRD-1).
    """

    __slots__ = ("_size", "_templates", "_time_text", "hits")

    def __init__(self, time_text: Callable[[datetime], str], size: int = DEFAULT_SIZE) -> None:
        self._time_text = time_text
        self._size = size
        # A question's template, or None when its build cannot be templated (built in full).
        self._templates: dict[Hashable, _Template | None] = {}
        #: Queries written from a template (tests and the benchmark read this).
        self.hits = 0

    def build(self, question: Hashable, control_id: str, now: datetime, build: Build) -> bytes:
        """The query for ``question`` with ``control_id`` built at ``now``: the bytes ``build`` writes."""
        if not self._size:
            return build(control_id, now)
        time_text = self._time_text(now)
        if not (_is_plain(control_id) and _is_plain(time_text)):
            return build(control_id, now)
        try:
            template = self._templates[question]
        except KeyError:
            template = self._learn(question, build)
        if template is None:
            return build(control_id, now)
        self.hits += 1
        return template.fill(control_id, time_text)

    def _learn(self, question: Hashable, build: Build) -> _Template | None:
        (first_id, second_id), (first_at, second_at) = _STAND_IN_IDS, _STAND_IN_TIMES
        first_text, second_text = self._time_text(first_at), self._time_text(second_at)
        template = _Template.cut(build(first_id, first_at), first_id, first_text)
        if template is not None and template.fill(second_id, second_text) != build(
            second_id, second_at
        ):
            template = None
        if len(self._templates) >= self._size:
            del self._templates[next(iter(self._templates))]
        self._templates[question] = template
        return template
