"""Real-socket test helpers for code that talks MLLP: a loopback peer and a fault-injecting proxy.

Both bind ``127.0.0.1`` port 0 and are async context managers, so tests never pick ports or sleep::

    async with LoopbackPeer() as ris, FaultProxy(ris.host, ris.port) as proxy:
        client = mllp.Client(proxy.host, proxy.port)
        assert b"MSA|AA|" in await client.request(message, timeout=1)
        proxy.drop_mid_frame()                      # next reply is cut in half, connection closed
        with pytest.raises(mllp.ConnectionLost):
            await client.request(message, timeout=1)
        assert len(await ris.wait_for_frames(2)) == 2

Neither imports any HL7 library: :func:`ack_for` builds a minimal ACK from the raw MSH fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Self

from mllp._lifecycle import AsyncClosing
from mllp.framing import Frame, FrameDecoder, encode_frame
from mllp.peer import PeerInfo
from mllp.server import Server, start_server

#: ``reply(payload) -> reply payload | None`` (plain function or coroutine function).
ReplyFunction = Callable[[bytes], bytes | Awaitable[bytes | None] | None]


def control_id(payload: bytes) -> bytes:
    """MSH-10 of an HL7 message, read from raw bytes (b"" if there is no MSH-10)."""
    if not payload.startswith(b"MSH") or len(payload) < 4:
        return b""
    # Look at the first segment only (no copy of the rest: messages can be megabytes).
    end = min((i for i in (payload.find(b"\r"), payload.find(b"\n")) if i >= 0), default=None)
    fields = payload[:end].split(payload[3:4])
    # fields[0] is "MSH" and MSH-1 is the separator itself, so MSH-n is fields[n - 1].
    return fields[9] if len(fields) > 9 else b""


def ack_for(payload: bytes, code: bytes = b"AA") -> bytes:
    """A minimal HL7 ACK whose MSA-2 echoes the request's MSH-10 (enough for correlation tests)."""
    cid = control_id(payload)
    return (
        b"MSH|^~\\&|LOOPBACK|TEST|||20260101000000||ACK|ACK" + cid + b"|P|2.5.1\r"
        b"MSA|" + code + b"|" + cid + b"\r"
    )


def ack_matches(request: bytes, reply: bytes) -> bool:
    """A ``correlate`` callback: True when the reply's MSA-2 equals the request's MSH-10."""
    for segment in reply.split(b"\r"):
        if segment.startswith(b"MSA|"):
            fields = segment.split(b"|")
            return len(fields) > 2 and fields[2] == control_id(request)
    return False


class LoopbackPeer(AsyncClosing):
    """An MLLP server on 127.0.0.1:0 that records what it receives and answers with ``reply``.

    ``reply`` takes the payload and returns the reply payload (or None for no reply); it may be a
    coroutine function, and may be swapped at any time through the attribute. The default answers
    :func:`ack_for`. ``received`` lists payloads in arrival order and ``peers`` the matching
    :class:`~mllp.PeerInfo`; :meth:`wait_for_frames` awaits a count without sleeping. Extra keyword
    arguments go to :func:`mllp.start_server` (``ssl=``, ``max_frame_size=``, ``on_framing_error=``...).
    """

    def __init__(
        self,
        reply: ReplyFunction | None = None,
        *,
        host: str = "127.0.0.1",
        **server_kwargs: object,
    ) -> None:
        self.reply: ReplyFunction = reply or ack_for
        self.received: list[bytes] = []
        self.peers: list[PeerInfo] = []
        self._bind_host = host
        self._server_kwargs = server_kwargs
        self._server: Server | None = None
        self._changed = asyncio.Condition()

    @property
    def host(self) -> str:
        return self._bind_host

    @property
    def port(self) -> int:
        assert self._server is not None, "use `async with LoopbackPeer()` first"
        return self._server.port

    @property
    def server(self) -> Server:
        assert self._server is not None
        return self._server

    async def _handle(self, payload: bytes, peer: PeerInfo) -> bytes | None:
        self.received.append(payload)
        self.peers.append(peer)
        async with self._changed:
            self._changed.notify_all()
        result = self.reply(payload)
        if inspect.isawaitable(result):
            return await result
        return result

    async def wait_for_frames(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """Wait until at least ``count`` frames were received; return all received so far."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.received) >= count)
        return list(self.received)

    async def start(self) -> Self:
        self._server = await start_server(
            self._handle,
            self._bind_host,
            0,
            **self._server_kwargs,  # type: ignore[arg-type]
        )
        return self

    async def aclose(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.aclose(grace)

    async def __aenter__(self) -> Self:
        return await self.start()


class Direction(enum.Enum):
    """Which way a fault applies. Most client tests want faults on the replies (``TO_CLIENT``)."""

    TO_SERVER = "to_server"
    TO_CLIENT = "to_client"


class _Faults:
    """Switches for one direction. Plain attributes: flip them from the test at any time."""

    def __init__(self) -> None:
        self.flowing = asyncio.Event()
        self.reset()

    def reset(self) -> None:
        self.delay = 0.0
        self.flowing.set()
        self.split_writes = False
        self.drop_mid_frame = False
        self.duplicate_next_frame = False
        self.junk = b""


class _Link:
    """One proxied connection: client socket <-> target socket, two pump tasks."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        """Close both sides with RST (SO_LINGER 0) rather than FIN."""
        for writer in self.writers:
            sock: socket.socket | None = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()

    async def pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, faults: _Faults
    ) -> None:
        decoder: FrameDecoder | None = None
        try:
            while data := await reader.read(65536):
                await faults.flowing.wait()
                if faults.delay:
                    await asyncio.sleep(faults.delay)
                if faults.junk:
                    data, faults.junk = faults.junk + data, b""
                if faults.drop_mid_frame:
                    faults.drop_mid_frame = False
                    start = max(data.find(b"\x0b"), 0)
                    cut = start + max(1, (len(data) - start) // 2)
                    writer.write(data[:cut])
                    await writer.drain()
                    self.close()
                    return
                if faults.duplicate_next_frame or decoder is not None:
                    # Decode this direction until one whole frame passed, then send it again.
                    decoder = decoder or FrameDecoder()
                    frames = [e for e in decoder.feed(data) if isinstance(e, Frame)]
                    if frames:
                        data += encode_frame(frames[0].payload)
                        faults.duplicate_next_frame = False
                        decoder = None
                if faults.split_writes:
                    for i in range(len(data)):
                        writer.write(data[i : i + 1])
                        await writer.drain()
                        await asyncio.sleep(0)  # let each byte leave as its own segment
                else:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()


class FaultProxy(AsyncClosing):
    """A TCP proxy on 127.0.0.1:0 in front of ``target_host:target_port`` with run-time faults.

    Faults (each takes ``direction``, default ``Direction.TO_CLIENT``, i.e. the replies):

    - ``set_delay(seconds)`` -- hold every chunk that long before forwarding it;
    - ``stall()`` / ``resume()`` -- stop forwarding (bytes are held, not lost) / flow again;
    - ``drop_mid_frame()`` -- forward the first half of the next chunk, then close both sides;
    - ``reset()`` -- abort every open connection with RST now (no direction);
    - ``split_writes(True)`` -- forward byte by byte, each in its own write;
    - ``duplicate_next_frame()`` -- send the next complete frame twice;
    - ``inject_junk(data)`` -- put raw ``data`` in front of the next chunk (may be a whole frame);
    - ``clear()`` -- remove every fault.

    ``connections`` counts accepted client connections (``await wait_for_connections(n)``).
    TLS passes through untouched (bytes are bytes), but byte-level faults then break the TLS record
    layer rather than MLLP, which is a different test.
    """

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.connections = 0
        self._faults = {d: _Faults() for d in Direction}
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()

    @property
    def port(self) -> int:
        assert self._server is not None, "use `async with FaultProxy(...)` first"
        return int(self._server.sockets[0].getsockname()[1])

    # --- fault switches ------------------------------------------------------------------------
    def set_delay(self, seconds: float, direction: Direction = Direction.TO_CLIENT) -> None:
        self._faults[direction].delay = seconds

    def stall(self, direction: Direction = Direction.TO_CLIENT) -> None:
        self._faults[direction].flowing.clear()

    def resume(self, direction: Direction = Direction.TO_CLIENT) -> None:
        self._faults[direction].flowing.set()

    def drop_mid_frame(self, direction: Direction = Direction.TO_CLIENT) -> None:
        self._faults[direction].drop_mid_frame = True

    def split_writes(
        self, enabled: bool = True, direction: Direction = Direction.TO_CLIENT
    ) -> None:
        self._faults[direction].split_writes = enabled

    def duplicate_next_frame(self, direction: Direction = Direction.TO_CLIENT) -> None:
        self._faults[direction].duplicate_next_frame = True

    def inject_junk(self, data: bytes, direction: Direction = Direction.TO_CLIENT) -> None:
        self._faults[direction].junk += data

    def reset(self) -> None:
        for link in list(self._links):
            link.reset()

    def clear(self) -> None:
        for faults in self._faults.values():
            faults.reset()

    # --- plumbing ------------------------------------------------------------------------------
    async def wait_for_connections(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.connections >= count)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(self)
        link.writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            link.reset()  # target down: the client sees a reset, as it would without the proxy
            return
        link.writers.append(up_writer)
        task = asyncio.current_task()
        if task is not None:
            link.tasks.append(task)
        self._links.add(link)
        self.connections += 1
        async with self._changed:
            self._changed.notify_all()
        try:
            # The pumps read the switches at every chunk, so faults flipped mid-connection apply.
            await asyncio.gather(
                link.pump(reader, up_writer, self._faults[Direction.TO_SERVER]),
                link.pump(up_reader, writer, self._faults[Direction.TO_CLIENT]),
            )
        finally:
            self._links.discard(link)

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            tasks = []
            for link in list(self._links):
                link.close()
                tasks += link.tasks
            # A stalled or delayed pump would otherwise outlive the test's event loop.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()
