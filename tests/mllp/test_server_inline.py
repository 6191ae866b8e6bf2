"""The server's inline path: a frame on an idle connection is handled straight from the read.

Every test sends at least two frames on one connection, because the first frame of a connection
starts the worker and the later ones take the inline path. What a handler may rely on is the same
on both paths: its context variables, ``asyncio.timeout``, replies in order, and a handler already
under way running to its end.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import struct

import mllp
from mllp.testing import ack_for, control_id
from tests.mllp.conftest import message
from tests.mllp.helpers import Recorder, msa2, read_frames

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def _serve(handler: mllp.Handler, **kwargs: object) -> mllp.Server:
    return await mllp.start_server(handler, "127.0.0.1", 0, **kwargs)  # type: ignore[arg-type]


async def test_context_variables_set_before_a_suspension_are_there_after_it() -> None:
    seen: list[tuple[str, str]] = []

    async def handler(payload: bytes, peer: mllp.PeerInfo) -> bytes:
        cid = control_id(payload).decode()
        token = _request_id.set(cid)  # set in the first step (inline), reset after the await
        await asyncio.sleep(0)
        seen.append((cid, _request_id.get()))
        _request_id.reset(token)  # ValueError if the two steps ran in different contexts
        return ack_for(payload)

    server = await _serve(handler)
    try:
        async with mllp.Client(server.host, server.port) as client:
            for cid in ("C1", "C2", "C3"):
                assert msa2(await client.request(message(cid), timeout=2)) == cid.encode()
    finally:
        await server.aclose()
    assert seen == [("C1", "C1"), ("C2", "C2"), ("C3", "C3")]


async def test_asyncio_timeout_works_in_a_handler_on_every_frame() -> None:
    async def handler(payload: bytes, peer: mllp.PeerInfo) -> bytes:
        # asyncio.timeout() needs a current task; it must be the one that is then cancelled.
        never = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(0.01):
                await never
        except TimeoutError:
            return ack_for(payload, b"AE")
        return ack_for(payload)

    server = await _serve(handler)
    try:
        async with mllp.Client(server.host, server.port) as client:
            for cid in (b"T1", b"T2", b"T3"):
                reply = await client.request(message(cid.decode()), timeout=2)
                assert b"MSA|AE|" + cid in reply
    finally:
        await server.aclose()


async def test_a_frame_arriving_while_a_suspended_handler_is_finishing_is_answered_after_it() -> (
    None
):
    release, slow_started = asyncio.Event(), asyncio.Event()
    started: list[bytes] = []

    async def handler(payload: bytes, peer: mllp.PeerInfo) -> bytes:
        cid = control_id(payload)
        started.append(cid)
        if cid == b"SLOW":
            slow_started.set()
            await release.wait()
        return ack_for(payload)

    server = await _serve(handler)
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(mllp.encode_frame(message("FIRST")))
        assert [msa2(r) for r in await read_frames(reader, 1)] == [b"FIRST"]
        writer.write(mllp.encode_frame(message("SLOW")))  # inline, suspends on the event
        await writer.drain()
        await asyncio.wait_for(slow_started.wait(), 2)
        writer.write(mllp.encode_frame(message("NEXT")))  # a separate read while SLOW is held
        await writer.drain()
        release.set()
        assert [msa2(r) for r in await read_frames(reader, 2)] == [b"SLOW", b"NEXT"]
        writer.close()
    finally:
        await server.aclose()
    assert started == [b"FIRST", b"SLOW", b"NEXT"]


async def test_a_suspended_handler_runs_to_its_end_when_the_peer_hangs_up() -> None:
    release = asyncio.Event()
    finished: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(payload: bytes, peer: mllp.PeerInfo) -> bytes:
        if control_id(payload) == b"KEEP":
            await release.wait()  # e.g. a commit still under way
            finished.set_result(control_id(payload))
        return ack_for(payload)

    obs = Recorder()
    server = await _serve(handler, observer=obs)
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(mllp.encode_frame(message("HELLO")))
        await read_frames(reader, 1)
        writer.write(mllp.encode_frame(message("KEEP")))
        await obs.until("frame_received", 2)
        # Gone before the reply, with a reset: the server's side of the connection is lost at once.
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        writer.transport.abort()
        await obs.until("connection_closed")
        release.set()
        assert await asyncio.wait_for(finished, 2) == b"KEEP"
    finally:
        await server.aclose()


async def test_a_handler_failing_on_a_later_frame_gets_the_error_hook_reply() -> None:
    def handler(payload: bytes, peer: mllp.PeerInfo) -> asyncio.Future[bytes]:
        # A plain function returning a future: not a coroutine, so nothing to step inline.
        if control_id(payload) == b"BAD":
            raise ValueError("cannot store")
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        done.set_result(ack_for(payload))
        return done

    def on_error(exc: Exception, peer: mllp.PeerInfo) -> bytes:
        return b"MSH|^~\\&|X|Y|||1||ACK|E1|P|2.3\rMSA|AE|BAD|" + str(exc).encode() + b"\r"

    server = await _serve(handler, on_handler_error=on_error)
    try:
        async with mllp.Client(server.host, server.port) as client:
            assert msa2(await client.request(message("OK1"), timeout=2)) == b"OK1"
            reply = await client.request(message("BAD"), timeout=2)
            assert b"MSA|AE|BAD|cannot store" in reply
            assert msa2(await client.request(message("OK2"), timeout=2)) == b"OK2"
    finally:
        await server.aclose()


async def test_a_handler_that_never_suspends_answers_pipelined_frames_in_order() -> None:
    async def handler(payload: bytes, peer: mllp.PeerInfo) -> bytes:
        return ack_for(payload)

    server = await _serve(handler)
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(mllp.encode_frame(message("P0")))
        await read_frames(reader, 1)
        # The first of these is handled inline, the rest queue behind it for the worker.
        writer.write(b"".join(mllp.encode_frame(message(f"P{i}")) for i in range(1, 6)))
        assert [msa2(r) for r in await read_frames(reader, 5)] == [
            f"P{i}".encode() for i in range(1, 6)
        ]
        writer.close()
    finally:
        await server.aclose()
