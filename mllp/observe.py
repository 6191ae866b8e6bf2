"""Observability hooks with no dependencies.

Subclass :class:`Observer`, override what you want to count, and pass the instance as ``observer=`` to
the server, client or pool. Every method is a no-op here so that adding a hook later breaks nobody.
Hooks are called synchronously from the event loop on the hot path: keep them cheap (increment a
counter, observe a histogram) and never block or raise.

``role`` is ``"server"`` or ``"client"`` so one observer can serve both sides with a label.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["server", "client"]


class Observer:
    """No-op base class; the daemon wires a subclass to Prometheus."""

    # --- traffic -------------------------------------------------------------------------------
    def bytes_received(self, role: Role, n: int) -> None:
        """``n`` bytes were read from a socket."""

    def bytes_sent(self, role: Role, n: int) -> None:
        """``n`` bytes were handed to a transport (framing included)."""

    def frame_received(self, role: Role, size: int) -> None:
        """A complete frame with a ``size``-byte payload was decoded."""

    def frame_sent(self, role: Role, size: int) -> None:
        """A frame with a ``size``-byte payload was written."""

    def commit_ack_received(self, role: Role, positive: bool) -> None:
        """An MLLP Release 2 commit ACK (``positive``) or NAK block arrived."""

    # --- framing trouble -----------------------------------------------------------------------
    def framing_error(self, role: Role, kind: str) -> None:
        """The framer reported a :class:`~mllp.errors.FramingErrorKind` (``oversize`` included)."""

    def junk_skipped(self, role: Role, n: int) -> None:
        """``n`` non-filler bytes outside any frame were skipped while resynchronising."""

    # --- connections ---------------------------------------------------------------------------
    def connection_opened(self, role: Role) -> None:
        """A connection was accepted (server) or established (client)."""

    def connection_closed(self, role: Role) -> None:
        """A connection opened earlier is gone, for whatever reason."""

    def connection_rejected(self) -> None:
        """The server turned a connection away because ``max_connections`` was reached."""

    def connection_evicted(self) -> None:
        """The server closed an idle connection to make room for a new one at a connection limit."""

    def peer_refused(self) -> None:
        """The server closed a connection at once because ``allow_peer`` refused its address."""

    def idle_timeout(self) -> None:
        """The server closed a connection that stayed idle past ``idle_timeout``."""

    def reading_paused(self) -> None:
        """The server paused reading a connection because its queue hit the high-water mark."""

    def handler_error(self) -> None:
        """The server's handler raised; the exception was logged."""

    # --- client side ---------------------------------------------------------------------------
    def connect_failed(self) -> None:
        """A connect attempt failed (refused, unreachable, timeout, TLS)."""

    def reconnect(self) -> None:
        """The client opened a connection to replace an earlier one."""

    def reply_timeout(self) -> None:
        """A request got no (matching) reply in time; the connection was dropped."""

    def foreign_reply(self) -> None:
        """A reply was discarded: unsolicited, or rejected by the ``correlate`` callback."""

    def round_trip(self, seconds: float) -> None:
        """A request got its reply ``seconds`` after it was written."""


#: Shared instance used when no observer is given.
NULL_OBSERVER = Observer()
