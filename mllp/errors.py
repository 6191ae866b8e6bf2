"""The error hierarchy. Every error this package raises on purpose is an :class:`MLLPError`.

The split matters to callers: the daemon answers HTTP 503 for :class:`ConnectError` (the RIS is not
there) and 504 for :class:`ReplyTimeout` (the RIS is there but silent), so the client never blurs the two.
"""

from __future__ import annotations

import enum


class MLLPError(Exception):
    """Base class of every error raised by :mod:`mllp`."""


class ConnectError(MLLPError):
    """No connection could be made: refused, unreachable, TLS handshake failed, connect timeout,
    or the client is still backing off after such a failure."""


class ReplyTimeout(MLLPError):
    """The request was written on a live connection but no (matching) reply came in time."""


class ConnectionLost(MLLPError):
    """The peer closed or reset the connection while an exchange was in progress."""


class CommitRejected(MLLPError):
    """The peer answered with an MLLP Release 2 negative commit acknowledgement (NAK block)."""


class ClientClosed(MLLPError):
    """The client or pool was used after :meth:`aclose`."""


class FramingErrorKind(enum.StrEnum):
    """Why the framer gave up on a frame. The values are stable metric label values."""

    #: The frame grew beyond ``max_frame_size``; the rest of it is discarded unbuffered.
    OVERSIZE = "oversize"
    #: An end block (0x1C) was followed by something other than CR (strict mode only).
    BAD_END_BLOCK = "bad_end_block"
    #: A start block (0x0B) arrived inside an open frame; the partial frame is dropped.
    UNEXPECTED_START_BLOCK = "unexpected_start_block"
    #: The stream ended inside a frame.
    TRUNCATED = "truncated"


class FramingError(MLLPError):
    """The peer broke MLLP framing.

    The sans-IO framer *returns* instances of this class as events instead of raising them, so a
    misbehaving peer never unwinds the caller's stack; the asyncio layer raises it only on the client.
    """

    def __init__(self, kind: FramingErrorKind, discarded: int, detail: str = "") -> None:
        self.kind = kind
        #: Payload bytes thrown away with the broken frame (for oversize: the bytes seen so far).
        self.discarded = discarded
        self.detail = detail
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)

    def __eq__(self, other: object) -> bool:
        # Value equality lets tests compare event streams from different chunkings.
        if not isinstance(other, FramingError):
            return NotImplemented
        return (self.kind, self.discarded) == (other.kind, other.discarded)

    def __hash__(self) -> int:
        return hash((self.kind, self.discarded))

    def __repr__(self) -> str:
        return f"FramingError({self.kind.value!r}, discarded={self.discarded})"
