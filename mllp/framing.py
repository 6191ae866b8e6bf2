"""Sans-IO MLLP framing: bytes in, events out. No sockets, no clock, no HL7 knowledge.

Theory of operation
-------------------
A block on the wire is ``<SB> payload <EB><CR>`` with SB = 0x0B, EB = 0x1C, CR = 0x0D.
:class:`FrameDecoder` is fed whatever the transport read (any split, any number of frames per read)
and produces events:

- :class:`Frame` -- a complete payload (the bytes between SB and EB);
- :class:`CommitAck` / :class:`CommitNak` -- the MLLP Release 2 blocks ``0B 06 1C 0D`` / ``0B 15 1C 0D``;
- :class:`~mllp.errors.FramingError` -- the peer broke framing; the decoder has already resynchronised;
- :data:`NEED_DATA` -- nothing more until more bytes arrive; :data:`CLOSED` -- after EOF was fed.

Policy (the MLLP spec is silent on broken input; this follows what senders actually do):

- Bytes outside a frame are skipped. NUL, CR and LF between frames are normal filler; anything else is
  counted in :attr:`FrameDecoder.junk_bytes` (resynchronising on the next SB).
- An SB inside an open frame means the sender abandoned the frame: the partial frame is reported as an
  ``unexpected_start_block`` error and a new frame starts (SB is not a legal payload byte).
- Strict (default): EB must be followed by CR, otherwise ``bad_end_block`` and the frame is dropped.
  Lenient: EB alone ends the frame at once (so a sender that never sends the CR is answered without
  waiting for a byte that will not come); a CR after it is ordinary filler.
- A frame whose payload grows beyond ``max_frame_size`` is reported as ``oversize`` as soon as that is
  known, and the rest of it is discarded as it streams past, never buffered.
- EOF inside a frame is ``truncated``.

Cost is linear: each input byte is examined by ``bytes.find`` (memchr) a bounded number of times, the
partial frame lives in one ``bytearray``, and a frame that arrives within one read is a single slice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from mllp.errors import FramingError, FramingErrorKind

SB: Final = b"\x0b"
EB: Final = b"\x1c"
CR: Final = b"\r"
_SB: Final = 0x0B
_EB: Final = 0x1C
_CR: Final = 0x0D
#: Release 2 commit acknowledgement blocks, complete with framing.
COMMIT_ACK_BLOCK: Final = b"\x0b\x06\x1c\r"
COMMIT_NAK_BLOCK: Final = b"\x0b\x15\x1c\r"
DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024
_FILLER: Final = (b"\x00", b"\r", b"\n")


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete MLLP payload (framing bytes removed)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CommitAck:
    """MLLP Release 2 positive commit acknowledgement (payload 0x06)."""


@dataclass(frozen=True, slots=True)
class CommitNak:
    """MLLP Release 2 negative commit acknowledgement (payload 0x15)."""


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: Returned by :meth:`FrameDecoder.next_event` when more bytes are needed.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: Returned by :meth:`FrameDecoder.next_event` once EOF was fed and every event was taken.
CLOSED: Final = _Sentinel("CLOSED")

Event = Frame | CommitAck | CommitNak | FramingError
#: What the scanner produces: a complete frame is its bare payload ``bytes`` (no :class:`Frame`
#: object per frame on a server's hot path); :meth:`FrameDecoder.feed` wraps it.
RawEvent = bytes | CommitAck | CommitNak | FramingError
_COMMIT_ACK: Final = CommitAck()
_COMMIT_NAK: Final = CommitNak()

# Decoder states.
_OUTSIDE: Final = 0  # between frames, looking for SB
_IN_FRAME: Final = 1  # collecting payload
_DISCARDING: Final = 2  # inside an oversized frame, looking for its end


def encode_frame(payload: bytes) -> bytes:
    """Return ``payload`` framed as one MLLP block, in one piece (one ``write()``).

    Raises ``ValueError`` if the payload contains SB or EB: such a block would desynchronise the peer.
    """
    if _SB in payload or _EB in payload:
        raise ValueError("MLLP payload must not contain 0x0B or 0x1C")
    return b"\x0b%b\x1c\r" % payload  # one allocation; faster than join or concatenation


def _event_for(payload: bytes) -> RawEvent:
    if len(payload) == 1:
        if payload == b"\x06":
            return _COMMIT_ACK
        if payload == b"\x15":
            return _COMMIT_NAK
    return payload


def _wrap(event: RawEvent) -> Event:
    return Frame(event) if type(event) is bytes else event  # type: ignore[return-value]


class FrameDecoder:
    """Incremental MLLP decoder (see the module docstring for the policy).

    Use :meth:`receive_data` + :meth:`next_event` (h11 style) or :meth:`feed`, which does both and
    returns the events as a list. ``receive_data(b"")`` signals EOF.
    """

    __slots__ = (
        "_buf",
        "_eb_pending",
        "_eof",
        "_events",
        "_state",
        "frames",
        "junk_bytes",
        "lenient",
        "max_frame_size",
    )

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, lenient: bool = False):
        if max_frame_size < 1:
            raise ValueError("max_frame_size must be positive")
        self.max_frame_size = max_frame_size
        self.lenient = lenient
        #: Non-filler bytes skipped outside frames so far.
        self.junk_bytes = 0
        #: Frames decoded so far (commit blocks included).
        self.frames = 0
        self._state = _OUTSIDE
        self._buf = bytearray()  # payload of the open frame
        # Strict mode saw EB as the last byte of a read; the next byte decides (CR or error).
        self._eb_pending = False
        self._eof = False
        self._events: deque[RawEvent] = deque()

    @property
    def buffered(self) -> int:
        """Bytes held for the open frame (never more than ``max_frame_size``)."""
        return len(self._buf)

    @property
    def in_frame(self) -> bool:
        """True while a frame has started and not ended (including an oversized one being skipped)."""
        return self._state != _OUTSIDE

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the transport; ``b""`` means EOF. Events queue for :meth:`next_event`."""
        self._process(bytes(data), self._events)

    def next_event(self) -> Event | _Sentinel:
        """Return the next event, :data:`NEED_DATA`, or :data:`CLOSED` after EOF."""
        if self._events:
            return _wrap(self._events.popleft())
        return CLOSED if self._eof else NEED_DATA

    def feed(self, data: bytes) -> list[Event]:
        """Feed bytes and return every event they complete (plus any still queued), in order."""
        return [_wrap(event) for event in self.feed_raw(data)]

    def feed_raw(self, data: bytes) -> list[RawEvent]:
        """As :meth:`feed`, but a complete frame is its payload ``bytes``, not a :class:`Frame`.

        For a server's hot path: one object less per frame. Everything else is as in :meth:`feed`.
        """
        # Fast path for the overwhelmingly common read: exactly one whole frame, nothing pending.
        # Same verdict as the scanner (no SB/EB inside, within the limit), in two memchr calls.
        if (
            self._state == _OUTSIDE
            and not self._events
            and not self._eof
            and len(data) > 3
            and data[0] == _SB
            and data[-2] == _EB
            and data[-1] == _CR
            and len(data) - 3 <= self.max_frame_size
        ):
            payload = data[1:-2]
            if _SB not in payload and _EB not in payload:
                self.frames += 1
                return [payload if len(payload) != 1 else _event_for(payload)]
        out: list[RawEvent] = list(self._events)
        self._events.clear()
        self._process(data, out)
        return out

    # The scanner. ``out`` is a list or a deque; both have ``append``.
    def _process(self, data: bytes, out: list[RawEvent] | deque[RawEvent]) -> None:
        if self._eof:
            if data:
                raise RuntimeError("data fed after EOF")
            return
        if not data:
            self._on_eof(out)
            return
        n = len(data)
        pos = 0
        if self._eb_pending:
            # The previous read ended on EB; this read's first byte decides.
            self._eb_pending = False
            if self._state == _IN_FRAME:
                if data[0] == _CR:
                    self._emit_buffered(out)
                    pos = 1
                else:
                    self._error(out, FramingErrorKind.BAD_END_BLOCK, len(self._buf) + 1)
            elif data[0] == _CR:  # end of an oversized frame
                self._state = _OUTSIDE
                pos = 1
        while pos < n:
            state = self._state
            if state == _OUTSIDE:
                i = data.find(SB, pos)
                end = n if i < 0 else i
                if end > pos:
                    self._count_junk(data, pos, end)
                if i < 0:
                    return
                pos = i + 1
                self._state = _IN_FRAME
            elif state == _IN_FRAME:
                j = data.find(EB, pos)
                k = data.find(SB, pos, n if j < 0 else j)
                if k >= 0:
                    # The sender abandoned the frame and started another one. The size check comes
                    # first so the verdict does not depend on where the reads were split.
                    size = len(self._buf) + k - pos
                    if size > self.max_frame_size:
                        self._error(out, FramingErrorKind.OVERSIZE, size, keep_state=_IN_FRAME)
                    else:
                        self._error(out, FramingErrorKind.UNEXPECTED_START_BLOCK, size, _IN_FRAME)
                    pos = k + 1
                    continue
                size = len(self._buf) + (n if j < 0 else j) - pos
                if size > self.max_frame_size:
                    self._error(out, FramingErrorKind.OVERSIZE, size, keep_state=_DISCARDING)
                    continue  # _DISCARDING looks for the end from the same position
                if j < 0:
                    self._buf += data[pos:]
                    return
                if self.lenient:
                    self._emit(out, data, pos, j)
                    pos = j + 1
                elif j + 1 == n:
                    self._buf += data[pos:j]
                    self._eb_pending = True
                    return
                elif data[j + 1] == _CR:
                    self._emit(out, data, pos, j)
                    pos = j + 2
                else:
                    self._error(out, FramingErrorKind.BAD_END_BLOCK, size + 1)
                    pos = j + 1  # the byte after EB is looked at as "outside" (it may be SB)
            else:  # _DISCARDING: drop the oversized frame as it streams past
                j = data.find(EB, pos)
                k = data.find(SB, pos, n if j < 0 else j)
                if k >= 0:  # as in _IN_FRAME: a start block begins a new frame
                    self._state = _IN_FRAME
                    pos = k + 1
                    continue
                if j < 0:
                    return
                if self.lenient:
                    self._state = _OUTSIDE
                    pos = j + 1
                elif j + 1 == n:
                    self._eb_pending = True
                    return
                elif data[j + 1] == _CR:
                    self._state = _OUTSIDE
                    pos = j + 2
                else:
                    pos = j + 1  # a stray EB inside the oversized frame: keep discarding

    def _emit(
        self, out: list[RawEvent] | deque[RawEvent], data: bytes, start: int, end: int
    ) -> None:
        if self._buf:
            self._buf += data[start:end]
            self._emit_buffered(out)
            return
        out.append(_event_for(data[start:end]))
        self.frames += 1
        self._state = _OUTSIDE

    def _emit_buffered(self, out: list[RawEvent] | deque[RawEvent]) -> None:
        payload = bytes(self._buf)
        # A fresh bytearray releases a large frame's memory now instead of keeping its capacity.
        self._buf = bytearray()
        out.append(_event_for(payload))
        self.frames += 1
        self._state = _OUTSIDE

    def _error(
        self,
        out: list[RawEvent] | deque[RawEvent],
        kind: FramingErrorKind,
        discarded: int,
        keep_state: int = _OUTSIDE,
    ) -> None:
        self._buf = bytearray()
        self._state = keep_state
        out.append(FramingError(kind, discarded))

    def _count_junk(self, data: bytes, start: int, end: int) -> None:
        filler = sum(data.count(f, start, end) for f in _FILLER)
        self.junk_bytes += end - start - filler

    def _on_eof(self, out: list[RawEvent] | deque[RawEvent]) -> None:
        self._eof = True
        if self._state == _IN_FRAME:
            discarded = len(self._buf) + (1 if self._eb_pending else 0)
            self._error(out, FramingErrorKind.TRUNCATED, discarded)
        elif self._state == _DISCARDING:
            self._state = _OUTSIDE  # already reported as oversize
        self._eb_pending = False
