"""Reading many values from one parsed message, fast: the per-slot loops of the slot answers.

:meth:`channels.message.Segment.get` splits a whole field into repetitions, components and subcomponents
(three lists) for every value it returns. A 36-slot answer asks for ~200 values, so :class:`Leaves` returns the
same value while splitting only when the field holds the delimiter concerned, and a group's segments are found
by name once instead of once per value. The result is :meth:`Segment.get`'s, value for value (the property test
in tests/channels/test_leaves.py compares the two).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..escaping import unescape
from ..message import FieldPath, Message, Segment


class Leaves:
    """Unescaped values of the segments of ``msg`` (whose delimiters and character set they share)."""

    __slots__ = ("_codec", "_comp", "_delims", "_esc", "_rep", "_sub")

    def __init__(self, msg: Message) -> None:
        d = msg.delimiters
        self._delims = d
        self._codec = msg.codec
        self._rep = d.repetition
        self._comp = d.component
        self._sub = d.subcomponent
        self._esc = d.escape

    def get(
        self,
        seg: Segment | None,
        field: int,
        component: int = 1,
        subcomponent: int = 1,
        repetition: int = 1,
    ) -> str:
        """``seg.get(field, component, subcomponent, repetition)``; ``""`` when ``seg`` is None."""
        if seg is None:
            return ""
        fields = seg.fields
        if not 0 <= field < len(fields):
            return ""
        raw = fields[field]
        if not raw or (field <= 2 and seg.name == "MSH"):
            return raw
        if repetition != 1 or self._rep in raw:
            reps = raw.split(self._rep)
            if repetition > len(reps):
                return ""
            raw = reps[repetition - 1]
        if component != 1 or self._comp in raw:
            comps = raw.split(self._comp)
            if component > len(comps):
                return ""
            raw = comps[component - 1]
        if subcomponent != 1 or self._sub in raw:
            subs = raw.split(self._sub)
            if subcomponent > len(subs):
                return ""
            raw = subs[subcomponent - 1]
        return unescape(raw, self._delims, self._codec) if self._esc in raw else raw

    def at(self, first: dict[str, Segment], path: FieldPath | None) -> str:
        """Value at ``path`` in the first segment of its name (``Message.value`` over a group), stripped."""
        if path is None:
            return ""
        seg = first.get(path.segment)
        if seg is None:
            return ""
        return self.get(seg, path.field, path.component, path.subcomponent, path.repetition).strip()


def first_by_name(segments: Iterable[Segment]) -> dict[str, Segment]:
    """The first segment of each name among ``segments``."""
    out: dict[str, Segment] = {}
    for seg in segments:
        if seg.name not in out:
            out[seg.name] = seg
    return out
