"""Slow clients are cut off by timeouts and cannot exhaust connections (slowloris).

Raw sockets play the attacker: an HTTP request whose headers never finish, a body that trickles,
an MLLP frame that starts and never ends, connections that say nothing. Each must be closed within
its configured bound (+ a margin for a loaded 2-core machine) while well-behaved clients are
served, and the MLLP connection limit must not starve a good peer once the slow ones are gone.

The trickling tasks sleep between bytes because that *is* the attack; nothing here sleeps to
wait for the server, which is awaited through EOF on the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from mllp import Client, start_server
from tests.security.conftest import API_KEY, Secured, SecuredFactory

BOUND = 0.5  # the configured timeout in these tests (seconds)
MARGIN = 2.0  # scheduling slack on a busy CI box; the bound itself is what is configured
PROBE = b"MSH|^~\\&|PROBE|LAB|RADSCHED|RADSCHED|20260601100000||ADT^A01|PROBE1|P|2.5.1\r"


@contextlib.asynccontextmanager
async def trickling(writer: asyncio.StreamWriter, every: float = 0.2) -> AsyncIterator[None]:
    """Keep sending one harmless byte at a time, the way a slowloris keeps a request alive."""

    async def drip() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                await asyncio.sleep(every)
                writer.write(b"X")
                await writer.drain()

    task = asyncio.create_task(drip())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def closed_after(reader: asyncio.StreamReader, started: float, limit: float) -> float:
    """Seconds from ``started`` until the server closed the connection (reading whatever it sent)."""
    async with asyncio.timeout(limit):
        while await reader.read(65536):
            pass
    return time.monotonic() - started


async def healthy(s: Secured) -> None:
    status, _, _ = await s.get("/api/ris/locations", modality="CR")
    assert status == 200
    assert API_KEY


# --- HTTP -----------------------------------------------------------------------------------------


async def test_http_request_whose_headers_never_finish_is_cut_off(
    secured: SecuredFactory,
) -> None:
    async with secured(http_idle_timeout_s=BOUND) as s:
        addr = s.daemon.listening["http"]
        conns = []
        started = time.monotonic()
        for _ in range(20):
            reader, writer = await asyncio.open_connection(addr.host, addr.port)
            writer.write(b"GET /api/ris/locations?modality=CR HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            conns.append((reader, writer))
        async with contextlib.AsyncExitStack() as stack:
            for _, writer in conns:
                await stack.enter_async_context(trickling(writer))
            await healthy(s)  # served while twenty slow requests are open
            took = [await closed_after(r, started, BOUND + MARGIN) for r, _ in conns]
        assert all(BOUND * 0.9 <= t <= BOUND + MARGIN for t in took), took
        await healthy(s)
        for _, writer in conns:
            writer.close()


async def test_http_body_that_trickles_is_answered_408_and_closed(
    secured: SecuredFactory,
) -> None:
    async with secured(http_body_timeout_s=BOUND, http_idle_timeout_s=30) as s:
        addr = s.daemon.listening["http"]
        reader, writer = await asyncio.open_connection(addr.host, addr.port)
        started = time.monotonic()
        writer.write(
            b"POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer nope\r\nContent-Length: 1000\r\n\r\n{"
        )
        async with trickling(writer):
            async with asyncio.timeout(BOUND + MARGIN):
                answer = await reader.read()  # until the server closes
        took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert b'"request_timeout"' in answer
        assert BOUND * 0.9 <= took <= BOUND + MARGIN
        writer.close()
        await healthy(s)


async def test_idle_keep_alive_connection_is_closed(secured: SecuredFactory) -> None:
    async with secured(http_idle_timeout_s=BOUND) as s:
        addr = s.daemon.listening["http"]
        reader, writer = await asyncio.open_connection(addr.host, addr.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        took = await closed_after(reader, started, BOUND + MARGIN)
        assert took <= BOUND + MARGIN
        writer.close()


# --- MLLP -----------------------------------------------------------------------------------------


async def ack_for_probe(s: Secured, control_id: str = "PROBE1") -> bytes:
    host, port = s.mllp
    async with Client(host, port, connect_timeout=2) as client:
        reply = await client.request(PROBE.replace(b"PROBE1", control_id.encode()), timeout=5)
    assert b"MSA|" in reply
    return reply


async def test_mllp_frame_that_never_ends_is_cut_off(secured: SecuredFactory) -> None:
    async with secured(mllp_frame_timeout_s=BOUND, mllp_idle_timeout_s=60) as s:
        host, port = s.mllp
        conns = []
        started = time.monotonic()
        for _ in range(10):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"\x0bMSH|^~\\&|SLOW|LORIS|")  # a frame starts ...
            conns.append((reader, writer))
        async with contextlib.AsyncExitStack() as stack:
            for _, writer in conns:
                await stack.enter_async_context(trickling(writer))  # ... and never ends
            await ack_for_probe(s)  # others are served meanwhile
            took = [await closed_after(r, started, BOUND + MARGIN) for r, _ in conns]
        assert all(BOUND * 0.9 <= t <= BOUND + MARGIN for t in took), took
        for _, writer in conns:
            writer.close()


async def test_mllp_connection_that_says_nothing_is_closed(secured: SecuredFactory) -> None:
    async with secured(mllp_idle_timeout_s=BOUND) as s:
        host, port = s.mllp
        reader, writer = await asyncio.open_connection(host, port)
        took = await closed_after(reader, time.monotonic(), BOUND + MARGIN)
        assert BOUND * 0.9 <= took <= BOUND + MARGIN
        writer.close()


async def test_slow_peers_at_the_connection_limit_do_not_starve_a_good_peer(
    secured: SecuredFactory,
) -> None:
    limit = 4
    async with secured(
        mllp_max_connections=limit, mllp_frame_timeout_s=BOUND, mllp_idle_timeout_s=60
    ) as s:
        host, port = s.mllp
        slow = []
        started = time.monotonic()
        for _ in range(limit):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"\x0bMSH|")
            await writer.drain()
            slow.append((reader, writer))
        async with contextlib.AsyncExitStack() as stack:
            for _, writer in slow:
                await stack.enter_async_context(trickling(writer))
            # At the limit: a further connection is accepted and closed at once, unserved.
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"\x0b" + PROBE + b"\x1c\r")
            async with asyncio.timeout(2):
                assert await reader.read() == b""
            writer.close()
            # The slow ones are cut off by the frame timeout ...
            for r, _ in slow:
                await closed_after(r, started, BOUND + MARGIN)
        # ... after which a well-behaved peer is served again.
        reply = await ack_for_probe(s, "PROBE2")
        assert b"PROBE2" in reply
        for _, w in slow:
            w.close()


@pytest.mark.parametrize("junk", [b"\x00" * 10, b"GET / HTTP/1.1\r\n\r\n"])
async def test_bytes_outside_frames_do_not_hold_a_connection_forever(
    secured: SecuredFactory, junk: bytes
) -> None:
    async with secured(mllp_idle_timeout_s=BOUND) as s:
        host, port = s.mllp
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(junk)
        took = await closed_after(reader, time.monotonic(), BOUND + MARGIN)
        assert took <= BOUND + MARGIN
        writer.close()


async def test_frame_timeout_spares_frames_that_end_and_connections_between_frames() -> None:
    """The timer runs only while a frame is open: a frame split across reads that ends in time is
    answered, and the connection then stays open past the frame timeout (the idle timeout rules)."""
    replies: list[bytes] = []

    async def echo(payload: bytes, peer: object) -> bytes:
        replies.append(payload)
        return b"ACK " + payload

    server = await start_server(echo, "127.0.0.1", 0, frame_timeout=0.5, idle_timeout=None)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x0bfirst half ")
        await writer.drain()
        await asyncio.sleep(0.3)  # the sender pauses mid-frame, within the bound
        writer.write(b"second half\x1c\r")
        assert await reader.readuntil(b"\x1c\r") == b"\x0bACK first half second half\x1c\r"
        await asyncio.sleep(0.8)  # longer than the frame timeout, with no frame open
        writer.write(b"\x0bagain\x1c\r")
        assert await reader.readuntil(b"\x1c\r") == b"\x0bACK again\x1c\r"
        writer.close()
    finally:
        await server.aclose(1.0)
