"""Slot answers that repeat: read their slots once, by the bytes they came in.

A slot answer is a header (MSH, MSA, QAK, the echoed query) and a body (one SCH group or DSP row per
open slot). The header changes with every answer (control ids, timestamps); the body changes only
when the RIS's calendar does. Patients asking about the same location and day get the same body,
and reading 36 slots from it (splitting fields, parsing timestamps) is most of what a slot query
costs the daemon. So the header is parsed and checked every time, and the body's slots are kept by
its exact bytes: the same bytes under the same delimiters and character set always give the same
slots, so a hit is the answer a fresh read would give, never a stale one. This is not a cache of
the RIS's calendar (``SLOT_CACHE_S`` is that): an answer whose body differs by one byte is read
afresh. Only all-ASCII answers are split (their character set is then MSH-18's alone), and slot
answers carry no patient data, so nothing here is PHI.
"""

from __future__ import annotations

from collections.abc import Callable

from ..escaping import Delimiters
from ..message import Message, parse
from ..model import Slot

#: Distinct answers kept; a 36-slot answer's body is about 9 KB, so this holds about 600 KB at most.
DEFAULT_SIZE = 64

#: Header segments the dialects' checks read. An answer with one of them after its first slot (an
#: ERR after the slots) is checked and read whole, and not kept.
_HEADER_NAMES = frozenset({"MSH", "MSA", "ERR", "QAK"})

#: ``check(message) -> bool``: raises for an error answer, False for one that says "no data".
Check = Callable[[Message], bool]
#: ``read(message) -> slots`` of a whole, checked answer.
Read = Callable[[Message], list[Slot]]


def split_body(data: bytes, first: bytes) -> int:
    """Where the body, from the first ``first`` segment on, begins in ``data`` (-1: not split).

    Only all-ASCII answers with CR terminators are split: their character set is MSH-18's alone.
    """
    if not data.startswith(b"MSH") or not data.isascii():
        return -1
    return data.find(b"\r" + first + data[3:4])


class SlotMemo:
    """The slots of the last ``size`` answer bodies, each read once; the oldest goes first (0 keeps
    nothing)."""

    __slots__ = ("_entries", "_on_read", "_size", "hits", "misses")

    def __init__(
        self, size: int = DEFAULT_SIZE, *, on_read: Callable[[bool], None] | None = None
    ) -> None:
        self._entries: dict[tuple[Delimiters, str, bytes], tuple[Slot, ...]] = {}
        self._size = size
        #: Told of each answer that got as far as its slots: True when they came from the memo.
        self._on_read = on_read
        self.hits = 0
        self.misses = 0

    def read(self, data: bytes, first: bytes, check: Check, read: Read) -> list[Slot]:
        """The slots of the answer ``data`` whose body starts with segment ``first``.

        ``check`` runs on every answer (on its header alone when the body is known), ``read`` only
        on an answer whose body is not among the last ``size``; both raise as they would without
        the memo, so the result is always what ``read(parse(data))`` after ``check`` gives.
        """
        start = split_body(data, first) if self._size else -1
        key = None
        if start >= 0:
            head = parse(data[:start])
            if not check(head):
                return []
            key = (head.delimiters, head.codec, data[start:])
            hit = self._entries.get(key)
            if hit is not None:
                self._count(True)
                return list(hit)
        whole = parse(data)
        if key is not None and not any(
            seg.name in _HEADER_NAMES for seg in whole.segments[len(head.segments) :]
        ):
            # The header checked is the whole answer's: read the slots and keep them.
            self._count(False)
            slots = read(whole)
            if len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = tuple(slots)
            return slots
        # Not split, or header segments after the first slot (an ERR): check it all, keep nothing.
        if not check(whole):
            return []
        self._count(False)
        return read(whole)

    def _count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        if self._on_read is not None:
            self._on_read(hit)
