"""asyncio MLLP server: a thin ``asyncio.Protocol`` around :class:`~mllp.framing.FrameDecoder`.

Per connection, decoded frames go into a FIFO drained by one task at a time, so replies leave in the
order the frames came (HL7 ordering) while connections run in parallel. The task exists only while
there is work; an idle connection costs a protocol object and nothing else.

The common case, one frame arriving on a connection with nothing else in hand, skips the queue: the
handler's first step runs straight from ``data_received`` (with the connection's worker task as the
current task and the connection's own context, as if the worker ran it). A handler that answers
without suspending — an ACK built from the frame alone — is answered in the same callback as the read,
which saves the wake-up of the worker and one turn of the event loop per message. A handler that does
suspend (a database commit) is handed over to the worker where it stopped, ahead of anything queued,
so replies keep their order and nothing already started is dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import ssl as _ssl
from asyncio.tasks import _enter_task, _leave_task
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from types import CoroutineType
from typing import Any, cast

from mllp._lifecycle import AsyncClosing
from mllp._sockopts import tune
from mllp.errors import FramingError
from mllp.framing import (
    COMMIT_ACK_BLOCK,
    COMMIT_NAK_BLOCK,
    DEFAULT_MAX_FRAME_SIZE,
    CommitAck,
    FrameDecoder,
    encode_frame,
)
from mllp.observe import NULL_OBSERVER, Observer
from mllp.peer import PeerInfo, peer_info

log = logging.getLogger("mllp.server")

#: ``async (payload, peer) -> reply payload or None``; the server frames the reply.
Handler = Callable[[bytes, PeerInfo], Awaitable[bytes | None]]
#: ``(error, peer) -> reply payload or None``; raise to close the connection instead.
FramingErrorHook = Callable[[FramingError, PeerInfo], bytes | None]
#: ``(exception, peer) -> reply payload or None`` (send nothing); raise to close the connection.
HandlerErrorHook = Callable[[Exception, PeerInfo], bytes | None]
#: ``(peer address) -> True to accept``; e.g. a :class:`~mllp.allow.PeerAllowList`.
AllowPeer = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class _Settings:
    handler: Handler
    max_frame_size: int
    lenient: bool
    idle_timeout: float | None
    frame_timeout: float | None
    on_framing_error: FramingErrorHook | None
    on_handler_error: HandlerErrorHook | None
    commit_ack: bool
    high_water_frames: int
    high_water_bytes: int
    max_connections: int
    max_connections_per_peer: int | None
    max_framing_errors: int | None
    allow_peer: AllowPeer | None
    observer: Observer


_UNSTARTED = object()


class _Resume:
    """A handler coroutine that suspended during its first step in ``data_received``.

    Awaiting it inside the worker task carries on from where it stopped: the object the coroutine
    yielded (a future, or None for a bare ``sleep(0)``) is passed to the task as if the worker had
    been running the coroutine all along, and whatever the task throws in (a cancellation) is
    thrown on into the coroutine. This is what ``await coro`` does, minus the first ``send``.
    """

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Awaitable[bytes | None], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, None, bytes | None]:
        if self._yielded is _UNSTARTED:  # not a coroutine, never stepped: plain delegation
            return (yield from self._coro.__await__())
        coro = cast("Coroutine[Any, Any, bytes | None]", self._coro)
        yielded = self._yielded
        while True:
            try:
                yield yielded
            except BaseException as exc:  # thrown in by the task: pass it on
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return cast("bytes | None", stop.value)
            else:
                try:
                    yielded = coro.send(None)
                except StopIteration as stop:
                    return cast("bytes | None", stop.value)

    def close(self) -> None:
        if isinstance(self._coro, CoroutineType):
            self._coro.close()


class _Connection(asyncio.Protocol):
    """One accepted connection. Not public: handlers see only :class:`PeerInfo`."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._cfg = server._settings
        self._obs = self._cfg.observer
        # Per-frame hooks are skipped outright without an observer: cheaper than a no-op call.
        self._counting = self._obs is not NULL_OBSERVER
        self._high_frames = self._cfg.high_water_frames
        self._high_bytes = self._cfg.high_water_bytes
        self._watching_frames = self._cfg.frame_timeout is not None
        self._loop = server._loop
        self._decoder = FrameDecoder(
            max_frame_size=self._cfg.max_frame_size, lenient=self._cfg.lenient
        )
        self._queue: deque[bytes | FramingError] = deque()
        self._queued_bytes = 0
        # One long-lived worker task per connection, started at the first frame. Between frames it
        # waits on ``_wake``; waking a task costs less than creating one per frame.
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        # The worker and the handler steps run in data_received share one context per connection,
        # so a context variable a handler sets before its first suspension is there after it.
        self._context = contextvars.copy_context()
        # A handler started in data_received that suspended: the worker finishes it before the queue.
        self._resume: _Resume | None = None
        self._busy = False  # a frame is being handled right now
        self._transport: asyncio.Transport | None = None
        self._paused = False  # reading paused by us (back-pressure or shutdown)
        self._stopped = False  # no more input will be accepted (fatal error, EOF, shutdown)
        self._write_ready: asyncio.Future[None] | None = None  # set while the transport is full
        self._idle_handle: asyncio.TimerHandle | None = None
        # Armed only while a frame spans reads; a frame that arrives in one read costs nothing.
        self._frame_handle: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._junk_seen = 0
        self._bad_run = 0  # consecutive framing errors (a good frame resets it)
        self.host = ""  # the peer's address, known before ``peer`` (admission works with it)
        self.peer: PeerInfo | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # --- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so cast instead of isinstance.
        self._transport = cast(asyncio.Transport, transport)
        transport = self._transport
        server = self._server
        peername = transport.get_extra_info("peername")
        self.host = str(peername[0]) if peername else "?"
        allow = self._cfg.allow_peer
        if allow is not None and not allow(self.host):
            self._obs.peer_refused()
            log.warning("refusing connection from %s: not an allowed peer", self.host)
            transport.abort()
            return
        if server._closing or not server._make_room(self.host):
            # Accept-then-close: asyncio cannot pause accept(), and a prompt close tells the sender
            # to back off instead of leaving it in the listen queue.
            self._obs.connection_rejected()
            log.warning("rejecting connection from %s: connection limit reached", peername)
            transport.abort()
            return
        tune(transport, keepalive=True)
        self.peer = peer_info(transport)
        server._connections.add(self)
        self._obs.connection_opened("server")
        log.debug("connection from %s", self.peer)
        self._last_activity = self._loop.time()
        if self._cfg.idle_timeout is not None:
            self._idle_handle = self._loop.call_later(self._cfg.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            return
        obs = self._obs
        counting = self._counting
        if counting:
            obs.bytes_received("server", len(data))
        if self._idle_handle is not None:
            # Only the idle timeout needs every read stamped; eviction order is stamped when the
            # worker runs out of work (a connection with a frame open is never evicted).
            self._last_activity = self._loop.time()
        decoder = self._decoder
        events = decoder.feed_raw(data)
        if self._watching_frames:
            self._watch_frame(bool(events))
        if decoder.junk_bytes != self._junk_seen:
            obs.junk_skipped("server", decoder.junk_bytes - self._junk_seen)
            self._junk_seen = decoder.junk_bytes
        queue = self._queue
        # The worker is parked with nothing in hand and the peer is reading its replies: the first
        # frame of this read can be handled right here (see the module docstring).
        inline = self._wake is not None and not queue and self._write_ready is None
        for event in events:
            cls = type(event)
            if cls is bytes:
                size = len(event)  # type: ignore[arg-type]
                if counting:
                    obs.frame_received("server", size)
                self._bad_run = 0
                if inline:
                    # Answered here, or suspended and now the worker's: later frames queue behind.
                    inline = False
                    self._handle_inline(event)  # type: ignore[arg-type]
                    if self._stopped:
                        break  # the reply closed the connection
                    continue
                queue.append(event)  # type: ignore[arg-type]
                self._queued_bytes += size
            elif cls is FramingError:
                assert isinstance(event, FramingError)
                obs.framing_error("server", event.kind.value)
                queue.append(event)
                self._bad_run += 1
                if self._cfg.on_framing_error is None:
                    # Close policy: answer what came before, then close; read nothing more.
                    self._stop_reading()
                    break
                limit = self._cfg.max_framing_errors
                if limit is not None and self._bad_run >= limit:
                    # A peer that only sends garbage is not going to resynchronise: answer what
                    # came so far (this error included), then close, instead of NAKing forever.
                    log.warning(
                        "closing %s after %d consecutive framing errors", self.peer, self._bad_run
                    )
                    obs.framing_error("server", "too_many_errors")
                    self._stop_reading()
                    break
            else:  # Release 2 commit blocks sent *to* a server carry no work
                obs.commit_ack_received("server", cls is CommitAck)
        if queue:
            if self._wake is not None:
                self._wake_worker()
            elif self._worker is None:
                self._worker = self._loop.create_task(self._work(), context=self._context)
            if not self._paused and (
                len(queue) > self._high_frames or self._queued_bytes > self._high_bytes
            ):
                self._paused = True
                obs.reading_paused()
                assert self._transport is not None
                self._transport.pause_reading()

    def eof_received(self) -> bool:
        for event in self._decoder.feed(b""):
            if isinstance(event, FramingError):
                self._obs.framing_error("server", event.kind.value)
                log.info("peer %s closed mid-frame (%d bytes dropped)", self.peer, event.discarded)
        self._stopped = True
        # With work queued, keep the write side open so those frames still get their replies;
        # otherwise returning False lets the transport close.
        self._wake_worker()  # an idle worker notices _stopped and closes
        return self._busy or bool(self._queue)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stopped = True
        self._queue.clear()  # the replies could not be delivered; the sender will resend
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        if self._frame_handle is not None:
            self._frame_handle.cancel()
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)
        self._wake_worker()
        if self.peer is not None:
            self._server._connections.discard(self)
            self._obs.connection_closed("server")
            log.debug("connection %s closed: %s", self.peer, exc or "clean")
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_ready = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)
        self._write_ready = None

    # --- work ----------------------------------------------------------------------------------
    def _handle_inline(self, payload: bytes) -> None:
        """Run the handler for ``payload`` up to its first suspension, from ``data_received``:
        its reply is written (or the connection closed on it), or, when it suspended, the worker
        has been woken to finish it."""
        worker, peer = self._worker, self.peer
        assert worker is not None and peer is not None
        self._busy = True
        loop, context = self._loop, self._context
        out: bytes | None
        # As the worker would be if it ran this step: asyncio.timeout() and current_task() inside
        # the handler see the worker task, which is parked on _wake and so not running.
        _enter_task(loop, worker)
        try:
            awaitable = context.run(self._cfg.handler, payload, peer)
            if type(awaitable) is not CoroutineType:  # a Future or the like: nothing to step
                self._resume = _Resume(awaitable, _UNSTARTED)
                self._wake_worker()
                return
            coro = cast("Coroutine[Any, Any, bytes | None]", awaitable)
            yielded = context.run(coro.send, None)
        except StopIteration as stop:
            out = self._reply_bytes(cast("bytes | None", stop.value))
        except Exception as exc:  # the per-connection boundary, as in the worker
            out = self._handler_failed(exc, peer)
        except asyncio.CancelledError:  # awaited something cancelled: the worker would end here
            out = None
        else:
            self._resume = _Resume(coro, yielded)
            self._wake_worker()
            return
        finally:
            _leave_task(loop, worker)
        self._busy = False
        self._last_activity = loop.time()
        self._send(out)

    def _reply_bytes(self, reply: bytes | None) -> bytes:
        """What goes on the wire for a handler's return value (nothing for None)."""
        out = b"" if reply is None else encode_frame(reply)
        if reply is not None and self._counting:
            self._obs.frame_sent("server", len(reply))
        if self._cfg.commit_ack:
            out = COMMIT_ACK_BLOCK + out
        return out

    def _send(self, out: bytes | None) -> None:
        """Write ``out``; None closes the connection (a hook's verdict)."""
        transport = self._transport
        assert transport is not None
        if out is None:
            self._stop_reading()
            transport.close()
        elif out and not transport.is_closing():
            transport.write(out)
            if self._counting:
                self._obs.bytes_sent("server", len(out))

    def _wake_worker(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _work(self) -> None:
        """The connection's worker: handle queued items strictly in order, then wait for more."""
        assert self._transport is not None and self.peer is not None
        transport, peer = self._transport, self.peer
        queue, handler = self._queue, self._cfg.handler
        out: bytes | None
        try:
            while True:
                while self._resume is not None or (queue and not transport.is_closing()):
                    self._busy = True
                    resume, self._resume = self._resume, None
                    if resume is not None:
                        # Started in data_received; finished even if the peer has gone since,
                        # like any handler already under way.
                        try:
                            out = self._reply_bytes(await resume)
                        except Exception as exc:
                            out = self._handler_failed(exc, peer)
                    elif type(item := queue.popleft()) is bytes:
                        self._queued_bytes -= len(item)
                        if self._paused:
                            self._maybe_resume()
                        # Awaited inline, not in a task per frame: one worker per connection is
                        # what keeps the replies in order.
                        try:
                            out = self._reply_bytes(await handler(item, peer))
                        except Exception as exc:  # the per-connection boundary
                            out = self._handler_failed(exc, peer)
                    else:
                        assert isinstance(item, FramingError)
                        out = self._framing_reply(item, peer)
                    self._send(out)
                    if out is None:
                        return
                    if self._write_ready is not None:
                        await self._write_ready  # the peer is not reading its replies: wait
                    elif queue:
                        # More frames already wait (pipelined or a burst of bad ones): let the
                        # other connections and tasks run first. A handler that returns without
                        # suspending would otherwise hold the loop for the whole burst.
                        await asyncio.sleep(0)
                self._busy = False
                self._last_activity = self._loop.time()
                if self._stopped or transport.is_closing():
                    break  # no more input will come: everything answered
                self._wake = self._loop.create_future()
                await self._wake
        except Exception:
            # A bug on our side (an observer, a hook): lose this connection, not the server.
            log.exception("internal error on connection %s; aborting it", peer)
            transport.abort()
        finally:
            self._busy = False
            if not transport.is_closing():
                transport.close()

    def _handler_failed(self, exc: Exception, peer: PeerInfo) -> bytes | None:
        """Log and count a handler exception; return what to send (None closes)."""
        log.error("handler failed for a frame from %s", peer, exc_info=exc)
        self._obs.handler_error()
        if self._cfg.commit_ack:
            return COMMIT_NAK_BLOCK  # Release 2: the sender resends on NAK
        return self._hook_reply(self._cfg.on_handler_error, exc, peer)

    def _framing_reply(self, error: FramingError, peer: PeerInfo) -> bytes | None:
        log.warning(
            "framing error from %s: %s (%d bytes dropped)", peer, error.kind, error.discarded
        )
        return self._hook_reply(self._cfg.on_framing_error, error, peer)

    def _hook_reply(
        self,
        hook: Callable[[Any, PeerInfo], bytes | None] | None,
        error: Exception,
        peer: PeerInfo,
    ) -> bytes | None:
        if hook is None:
            return None
        try:
            reply = hook(error, peer)
            if reply is None:
                return b""
            self._obs.frame_sent("server", len(reply))
            return encode_frame(reply)
        except Exception:
            log.exception("error hook failed for %s; closing", peer)
            return None

    def _maybe_resume(self) -> None:
        if (
            self._paused
            and not self._stopped
            and len(self._queue) <= self._cfg.high_water_frames // 2
            and self._queued_bytes <= self._cfg.high_water_bytes // 2
        ):
            self._paused = False
            assert self._transport is not None
            self._transport.resume_reading()

    def _stop_reading(self) -> None:
        self._stopped = True
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _check_idle(self) -> None:
        # One timer per connection, re-armed lazily: data_received only stamps a time, which is much
        # cheaper than cancelling and re-creating a TimerHandle on every read.
        timeout = self._cfg.idle_timeout
        assert timeout is not None and self._transport is not None
        remaining = self._last_activity + timeout - self._loop.time()
        if self._busy or remaining > 0:
            delay = timeout if self._busy else remaining
            self._idle_handle = self._loop.call_later(delay, self._check_idle)
            return
        self._idle_handle = None
        log.info("closing idle connection %s", self.peer)
        self._obs.idle_timeout()
        self._transport.close()

    def _watch_frame(self, something_ended: bool) -> None:
        # Slowloris defence: the idle timeout is reset by every byte, so a sender trickling one
        # byte at a time would hold a connection (and a slot under max_connections) forever.
        handle = self._frame_handle
        if self._decoder.in_frame:
            if handle is None or something_ended:  # a new frame began in this read
                if handle is not None:
                    handle.cancel()
                timeout = self._cfg.frame_timeout
                assert timeout is not None
                self._frame_handle = self._loop.call_later(timeout, self._frame_expired)
        elif handle is not None:
            handle.cancel()
            self._frame_handle = None

    def _frame_expired(self) -> None:
        self._frame_handle = None
        if self._stopped or not self._decoder.in_frame or self._transport is None:
            return
        log.info(
            "closing %s: frame not completed within %.1f s (%d bytes held)",
            self.peer,
            self._cfg.frame_timeout,
            self._decoder.buffered,
        )
        self._obs.framing_error("server", "frame_timeout")
        # Frames already complete still get their replies; nothing more is read.
        self._stop_reading()
        if not self._busy and not self._queue:
            self._transport.close()

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing being handled, no frame open: closing it loses nothing."""
        return not (self._busy or self._queue or self._stopped or self._decoder.in_frame)

    def evict(self, newcomer: str) -> None:
        """Close this idle connection to make room for a new one from ``newcomer``."""
        log.info("closing idle connection %s to make room for %s", self.peer, newcomer)
        self._obs.connection_evicted()
        self._server._connections.discard(self)
        self._stop_reading()
        if self._transport is not None:
            self._transport.close()

    def begin_shutdown(self) -> None:
        """Stop reading and drop unstarted frames; the frame being handled may finish."""
        self._stop_reading()
        self._queue.clear()
        self._queued_bytes = 0
        if not self._busy and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._resume is not None:  # started inline, never picked up: unwind it here
            resume, self._resume = self._resume, None
            resume.close()
        if self._worker is not None:
            self._worker.cancel()
        if self._transport is not None:
            self._transport.abort()


class Server(AsyncClosing):
    """A listening MLLP server. Create it with :func:`start_server`."""

    def __init__(self, settings: _Settings) -> None:
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self._connections: set[_Connection] = set()
        self._closing = False
        self._aserver: asyncio.Server | None = None
        self._address: tuple[str, int] = ("", 0)

    def _make_room(self, host: str) -> bool:
        """Admit a new connection from ``host``, closing an idle one if a limit is reached.

        At the per-peer limit, that peer's longest-idle connection goes. At the overall limit, the
        longest-idle connection of the peer holding the most connections goes, so a peer that opens
        many silent connections loses its own before anyone else's. False if nothing is idle.
        """
        cfg = self._settings
        per_peer = cfg.max_connections_per_peer
        if per_peer is not None:
            mine = [c for c in self._connections if c.host == host]
            if len(mine) >= per_peer and not self._evict_one(mine, host):
                return False
        if len(self._connections) >= cfg.max_connections:
            counts = Counter(c.host for c in self._connections)
            ranked = sorted(self._connections, key=lambda c: (-counts[c.host], c._last_activity))
            if not self._evict_one(ranked, host, presorted=True):
                return False
        return True

    @staticmethod
    def _evict_one(
        candidates: list[_Connection], newcomer: str, *, presorted: bool = False
    ) -> bool:
        if not presorted:
            candidates = sorted(candidates, key=lambda c: c._last_activity)
        for conn in candidates:
            if conn.idle:
                conn.evict(newcomer)
                return True
        return False

    @property
    def sockets(self) -> tuple[object, ...]:
        """The listening sockets (as ``asyncio.Server.sockets``)."""
        assert self._aserver is not None
        return tuple(self._aserver.sockets)

    @property
    def port(self) -> int:
        """The bound port (useful after binding port 0); still readable after close."""
        return self._address[1]

    @property
    def host(self) -> str:
        """The bound address of the first listening socket."""
        return self._address[0]

    @property
    def connection_count(self) -> int:
        """Connections currently open."""
        return len(self._connections)

    async def aclose(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight handlers finish within ``grace`` seconds, then close all.

        Frames received but not yet started are dropped unanswered; the sender resends them.
        """
        if self._closing:
            return
        self._closing = True
        assert self._aserver is not None
        self._aserver.close()
        conns = list(self._connections)
        for conn in conns:
            conn.begin_shutdown()
        waits = [conn.closed for conn in conns]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=grace)
            if pending:
                log.warning(
                    "%d connection(s) still busy after %.1f s grace; aborting", len(pending), grace
                )
                for conn in conns:
                    if not conn.closed.done():
                        conn.abort()
                await asyncio.wait(pending, timeout=1.0)
        await self._aserver.wait_closed()


async def start_server(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int = 2575,
    *,
    ssl: _ssl.SSLContext | None = None,
    max_connections: int = 256,
    max_connections_per_peer: int | None = None,
    max_framing_errors: int | None = None,
    allow_peer: AllowPeer | None = None,
    idle_timeout: float | None = None,
    frame_timeout: float | None = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    lenient: bool = False,
    on_framing_error: FramingErrorHook | None = None,
    on_handler_error: HandlerErrorHook | None = None,
    observer: Observer | None = None,
    commit_ack: bool = False,
    high_water_frames: int = 32,
    high_water_bytes: int = 8 * 1024 * 1024,
    backlog: int = 128,
    ssl_handshake_timeout: float | None = 10.0,
    reuse_port: bool = False,
) -> Server:
    """Listen for MLLP on ``host:port`` (port 0 picks a free port; read it from ``server.port``).

    ``handler(payload, peer)`` is awaited once per frame, in order per connection; its return value is
    framed and written in one ``write()``. Framing errors close the connection unless
    ``on_framing_error`` is given: its return value (e.g. a NAK) is sent instead and the connection
    carries on. Handler exceptions are logged and close that connection unless ``on_handler_error``
    is given, which answers the same way. Either hook returns None to send nothing, or raises to
    close. With
    ``commit_ack`` the server sends an MLLP Release 2 commit ACK block before each reply (NAK when
    the handler raised). ``idle_timeout`` (seconds, None = never) closes connections with no traffic.
    ``frame_timeout`` (seconds, None = never) closes a connection whose frame has started but not
    ended within that time, however slowly bytes keep trickling in. ``reuse_port`` sets
    ``SO_REUSEPORT``, so several processes can listen on the same address and the kernel spreads
    new connections between them.

    Admission: ``allow_peer(address)`` (e.g. a :class:`~mllp.allow.PeerAllowList`) refuses other
    peers outright. At ``max_connections_per_peer`` (per peer address) or ``max_connections`` a new
    connection closes the longest-idle one instead of being refused (refused only when none is
    idle). ``max_framing_errors`` closes a connection after that many framing errors in a row.
    """
    settings = _Settings(
        handler=handler,
        max_frame_size=max_frame_size,
        lenient=lenient,
        idle_timeout=idle_timeout,
        frame_timeout=frame_timeout,
        on_framing_error=on_framing_error,
        on_handler_error=on_handler_error,
        commit_ack=commit_ack,
        high_water_frames=high_water_frames,
        high_water_bytes=high_water_bytes,
        max_connections=max_connections,
        max_connections_per_peer=max_connections_per_peer,
        max_framing_errors=max_framing_errors,
        allow_peer=allow_peer,
        observer=observer or NULL_OBSERVER,
    )
    server = Server(settings)
    server._aserver = await server._loop.create_server(
        lambda: _Connection(server),
        host,
        port,
        ssl=ssl,
        backlog=backlog,
        reuse_address=True,
        reuse_port=reuse_port or None,
        ssl_handshake_timeout=ssl_handshake_timeout if ssl is not None else None,
    )
    sockname = server._aserver.sockets[0].getsockname()
    server._address = (str(sockname[0]), int(sockname[1]))
    return server
