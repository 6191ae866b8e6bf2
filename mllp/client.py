"""asyncio MLLP client: one persistent connection, one request in flight, reconnect with backoff.

Rules that keep replies honest (the Mirth "late ACK taken for the next message" bug):

- A connection that timed out, was cancelled mid-request, or saw an unsolicited frame is dropped and
  a fresh one is opened for the next request, so a late reply can never answer a later request.
- ``correlate(request, reply)`` (e.g. MSA-2 == MSH-10) may reject a reply; it is counted as foreign
  and discarded, and the client keeps waiting until the timeout.
- EOF or reset while idle is noticed by the protocol as it happens, so a dead connection is replaced
  before it is used (no write into a half-closed socket followed by a misleading timeout).

The client never retransmits by itself: after :class:`~mllp.errors.ConnectionLost` or
:class:`~mllp.errors.ReplyTimeout` the caller decides, resending the same MSH-10 if it does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import select
import ssl as _ssl
from collections.abc import Callable
from typing import cast

from mllp._lifecycle import AsyncClosing
from mllp._sockopts import tune
from mllp.errors import (
    ClientClosed,
    CommitRejected,
    ConnectError,
    ConnectionLost,
    FramingError,
    MLLPError,
    ReplyTimeout,
)
from mllp.framing import DEFAULT_MAX_FRAME_SIZE, CommitAck, Frame, FrameDecoder, encode_frame
from mllp.observe import NULL_OBSERVER, Observer

log = logging.getLogger("mllp.client")

#: ``(request payload, reply payload) -> True if the reply answers the request``.
Correlate = Callable[[bytes, bytes], bool]


class _ClientProtocol(asyncio.Protocol):
    """Decodes replies and resolves the waiter of the one request in flight."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_frame_size: int,
        lenient: bool,
        observer: Observer,
        correlate: Correlate | None,
    ) -> None:
        self._loop = loop
        self._decoder = FrameDecoder(max_frame_size=max_frame_size, lenient=lenient)
        self._obs = observer
        self._correlate = correlate
        self.transport: asyncio.Transport | None = None
        self.request: bytes = b""
        self.waiter: asyncio.Future[bytes] | None = None
        #: False once the connection must not carry another request.
        self.usable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so cast instead of isinstance.
        self.transport = cast(asyncio.Transport, transport)
        tune(transport, keepalive=True)

    def data_received(self, data: bytes) -> None:
        self._obs.bytes_received("client", len(data))
        junk = self._decoder.junk_bytes
        events = self._decoder.feed(data)
        if self._decoder.junk_bytes != junk:
            self._obs.junk_skipped("client", self._decoder.junk_bytes - junk)
        for event in events:
            if isinstance(event, Frame):
                self._obs.frame_received("client", len(event.payload))
                self._on_reply(event.payload)
            elif isinstance(event, FramingError):
                self._obs.framing_error("client", event.kind.value)
                self._fail(event)
            else:
                positive = isinstance(event, CommitAck)
                self._obs.commit_ack_received("client", positive)
                if not positive:
                    self._fail(CommitRejected("peer sent an MLLP commit NAK"), keep=True)

    def _on_reply(self, payload: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            # Nobody asked: the stream is out of step with our requests. Never reuse it.
            self._obs.foreign_reply()
            log.warning(
                "unsolicited frame (%d bytes) from the peer; dropping the connection", len(payload)
            )
            self.usable = False
            return
        if self._correlate is not None:
            try:
                matches = self._correlate(self.request, payload)
            except Exception:
                log.exception("correlate callback failed; treating the reply as foreign")
                matches = False
            if not matches:
                self._obs.foreign_reply()
                log.warning("discarding a reply that does not match the request")
                return
        waiter.set_result(payload)

    def _fail(self, exc: MLLPError, *, keep: bool = False) -> None:
        if not keep:
            self.usable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def eof_received(self) -> bool:
        # Half-close: the peer will send nothing more, so the connection cannot carry a reply.
        self._fail(ConnectionLost("peer closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"connection lost: {exc}" if exc else "peer closed the connection"
        self._fail(ConnectionLost(reason))


def _expire(waiter: asyncio.Future[bytes]) -> None:
    """The reply's deadline passed: the request fails with TimeoutError (unless answered meanwhile)."""
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _readable(proto: _ClientProtocol) -> bool:
    """True if the idle socket has something to read: EOF, a reset, a TLS alert or stray bytes.

    The event loop may not have run the protocol's callbacks yet when a request follows the peer's
    close closely; asking the kernel directly catches that, so the request goes to a fresh connection
    instead of into a dead one. ``select`` works on uvloop's pseudo-sockets too.
    """
    assert proto.transport is not None
    sock = proto.transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        fd = sock.fileno()
        if hasattr(select, "poll"):  # poll has no FD_SETSIZE limit; a daemon may have many fds
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True  # cannot tell: a fresh connection is the safe choice


class Client(AsyncClosing):
    """A persistent MLLP connection to ``host:port`` with lazy connect and backoff.

    ``await request(payload, timeout)`` sends one unframed message and returns the unframed reply.
    Requests are serialised (MLLP allows one message in flight per connection); use
    :class:`~mllp.pool.ClientPool` for parallelism.

    Connect failures raise :class:`ConnectError` and start an exponential backoff (``backoff_initial``
    doubling up to ``backoff_max``, with jitter); requests made while backing off fail fast with
    :class:`ConnectError` rather than stacking up behind a dead peer.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        lenient: bool = False,
        observer: Observer | None = None,
        correlate: Correlate | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_frame_size = max_frame_size
        self._lenient = lenient
        self._obs = observer or NULL_OBSERVER
        self._correlate = correlate
        self._lock = asyncio.Lock()
        self._proto: _ClientProtocol | None = None
        self._failures = 0  # consecutive failed connect attempts
        self._retry_at = 0.0  # loop time before which we do not try to connect again
        self._ever_connected = False
        self._closed = False

    @property
    def connected(self) -> bool:
        """True if an open, reusable connection exists right now."""
        proto = self._proto
        return (
            proto is not None
            and proto.usable
            and proto.transport is not None
            and not proto.transport.is_closing()
        )

    def backoff_delay(self, failures: int) -> float:
        """Delay after ``failures`` consecutive connect failures: doubling, capped, "equal jitter"
        (half fixed, half random) so a fleet of clients does not reconnect in lock-step."""
        base = min(self._backoff_max, self._backoff_initial * (2.0 ** max(0, failures - 1)))
        return base / 2 + random.uniform(0, base / 2)

    async def request(self, payload: bytes, timeout: float) -> bytes:
        """Send ``payload`` (unframed HL7) and return the unframed reply.

        ``timeout`` bounds the wait for the reply once the message is written; connecting has its own
        ``connect_timeout``. Raises :class:`ConnectError`, :class:`ReplyTimeout`,
        :class:`ConnectionLost`, :class:`FramingError`, :class:`CommitRejected` or
        :class:`ClientClosed`.
        """
        frame = encode_frame(payload)  # validate before touching the connection
        async with self._lock:
            if self._closed:
                raise ClientClosed("client is closed")
            proto = await self._connection()
            assert proto.transport is not None
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[bytes] = loop.create_future()
            proto.request = payload
            proto.waiter = waiter
            keep = False
            try:
                start = loop.time()
                proto.transport.write(frame)
                self._obs.bytes_sent("client", len(frame))
                self._obs.frame_sent("client", len(payload))
                # A timer that fails the waiter, rather than asyncio.timeout: the same outcome
                # for a fraction of the CPU (no Timeout object, no task cancel and uncancel),
                # which counts on every RIS query (issue 16).
                timer = loop.call_later(timeout, _expire, waiter)
                try:
                    reply = await waiter
                except TimeoutError:
                    self._obs.reply_timeout()
                    raise ReplyTimeout(
                        f"no reply from {self.host}:{self.port} within {timeout:g} s"
                    ) from None
                except CommitRejected:
                    keep = True  # a NAK is an answer: the stream is still in step
                    raise
                finally:
                    timer.cancel()
                self._obs.round_trip(loop.time() - start)
                keep = True
                return reply
            finally:
                proto.waiter = None
                proto.request = b""
                if not keep:
                    # Timeout, cancellation, loss, framing error: anything arriving later on this
                    # connection would belong to this request, so the connection goes.
                    self._drop()

    async def _connection(self) -> _ClientProtocol:
        proto = self._proto
        if proto is not None:
            if self.connected and not _readable(proto):
                return proto
            self._drop()
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._retry_at:
            raise ConnectError(
                f"{self.host}:{self.port} unreachable; next attempt in {self._retry_at - now:.1f} s"
            )
        proto = _ClientProtocol(
            loop, self._max_frame_size, self._lenient, self._obs, self._correlate
        )
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.create_connection(
                    lambda: proto,
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self._server_hostname if self._ssl else None,
                )
        except (OSError, TimeoutError, _ssl.SSLError) as exc:
            self._failures += 1
            delay = self.backoff_delay(self._failures)
            self._retry_at = loop.time() + delay
            self._obs.connect_failed()
            log.warning(
                "connect to %s:%s failed (%s); backing off %.2f s",
                self.host,
                self.port,
                exc.__class__.__name__,
                delay,
            )
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {reason}") from exc
        self._failures = 0
        self._retry_at = 0.0
        if self._ever_connected:
            self._obs.reconnect()
        self._ever_connected = True
        self._obs.connection_opened("client")
        self._proto = proto
        return proto

    def _drop(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            # abort(), not close(): never flush a half-written request into a suspect stream.
            proto.transport.abort()
            self._obs.connection_closed("client")

    async def aclose(self) -> None:
        """Close the connection; later requests raise :class:`ClientClosed`."""
        self._closed = True
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
            self._obs.connection_closed("client")
