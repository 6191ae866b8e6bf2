"""Who gets a connection: the allow-list, per-peer and overall limits with idle eviction, and
what a connection that only sends garbage costs (issue 11 item 3). Real loopback sockets; the
whole of 127.0.0.0/8 is loopback on Linux, so 127.0.0.2 plays a second host."""

from __future__ import annotations

import asyncio

import pytest

import mllp
from mllp.testing import LoopbackPeer
from tests.mllp.conftest import message
from tests.mllp.helpers import Recorder, msa2, read_frames

OTHER = "127.0.0.2"


async def _connect(
    port: int, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _ask(port: int, cid: str, source: str = "127.0.0.1") -> bytes:
    reader, writer = await _connect(port, source)
    try:
        writer.write(mllp.encode_frame(message(cid)))
        return msa2((await read_frames(reader, 1))[0])
    finally:
        writer.close()


def test_allow_list_parses_addresses_and_networks() -> None:
    allow = mllp.PeerAllowList.parse("10.1.2.3, 192.168.10.0/24 ::1")
    assert allow("10.1.2.3") and allow("192.168.10.77") and allow("::1")
    assert allow("::ffff:10.1.2.3")  # IPv4 peer on an IPv6 listener
    assert not allow("10.1.2.4") and not allow("192.168.11.1") and not allow("::2")
    assert not allow("not-an-address")
    with pytest.raises(ValueError, match="ris.example"):
        mllp.PeerAllowList.parse("ris.example")
    with pytest.raises(ValueError):
        mllp.PeerAllowList.parse(" , ")


async def test_a_peer_outside_the_allow_list_is_closed_unserved() -> None:
    obs = Recorder()
    allow = mllp.PeerAllowList.parse("127.0.0.1")
    async with LoopbackPeer(allow_peer=allow, observer=obs) as peer:
        reader, writer = await _connect(peer.port, OTHER)
        writer.write(mllp.encode_frame(message("NOPE")))
        assert await reader.read() == b""
        writer.close()
        assert obs.counts["peer_refused"] == 1 and peer.received == []
        assert await _ask(peer.port, "YES") == b"YES"


async def test_at_the_per_peer_limit_the_peers_longest_idle_connection_makes_room() -> None:
    obs = Recorder()
    async with LoopbackPeer(max_connections_per_peer=2, observer=obs) as peer:
        silent = [await _connect(peer.port, OTHER) for _ in range(2)]
        await obs.until("connection_opened", 2)
        # A third connection from the same host closes the oldest silent one, not itself.
        assert await _ask(peer.port, "P3", OTHER) == b"P3"
        assert await silent[0][0].read() == b""
        assert obs.counts["connection_evicted"] == 1
        # Another host is not counted against that peer's limit.
        assert await _ask(peer.port, "H1") == b"H1"
        assert obs.counts["connection_evicted"] == 1
        for _, writer in silent:
            writer.close()


async def test_silent_connections_at_the_overall_limit_do_not_lock_the_ris_out() -> None:
    """The review's finding: 64 silent connections kept the RIS out until the idle timeout."""
    obs = Recorder()
    async with LoopbackPeer(max_connections=8, observer=obs) as peer:
        silent = [await _connect(peer.port, OTHER) for _ in range(8)]
        await obs.until("connection_opened", 8)
        ris_reader, ris = await _connect(peer.port)
        ris.write(mllp.encode_frame(message("RIS1")))
        assert msa2((await read_frames(ris_reader, 1))[0]) == b"RIS1"
        # The RIS's own connection, idle now, is not the next to go: the host holding the most is.
        assert await _ask(peer.port, "RIS2") == b"RIS2"
        ris.write(mllp.encode_frame(message("RIS3")))
        assert msa2((await read_frames(ris_reader, 1))[0]) == b"RIS3"
        closed = [r for r, _ in silent if r.at_eof() or await _closed_soon(r)]
        assert len(closed) == 2 and obs.counts["connection_evicted"] == 2
        ris.close()
        for _, writer in silent:
            writer.close()


async def _closed(reader: asyncio.StreamReader) -> bool:
    """EOF, or a reset: a server closing with our unread bytes in its buffer sends RST."""
    try:
        return await reader.read() == b""
    except ConnectionResetError:
        return True


async def _closed_soon(reader: asyncio.StreamReader) -> bool:
    try:
        async with asyncio.timeout(0.2):
            return await reader.read() == b""
    except TimeoutError:
        return False


async def test_consecutive_framing_errors_close_the_connection() -> None:
    def nak(error: mllp.FramingError, peer: mllp.PeerInfo) -> bytes:
        return b"MSH|^~\\&|X|Y|||1||ACK|N|P|2.3\rMSA|AR|\r"

    obs = Recorder()
    async with LoopbackPeer(on_framing_error=nak, max_framing_errors=5, observer=obs) as peer:
        reader, writer = await _connect(peer.port)
        # Good frames in between reset the count: 4 errors, a frame, 4 errors keep it open.
        bad = b"\x0bX\x1cX" * 4
        writer.write(
            bad + mllp.encode_frame(message("OK1")) + bad + mllp.encode_frame(message("OK2"))
        )
        replies = await read_frames(reader, 10)
        assert [msa2(r) for r in replies if b"MSA|AA" in r] == [b"OK1", b"OK2"]
        # 200,000 tiny bad frames: five NAKs, then the connection is closed.
        writer.write(b"\x0bX\x1cX" * 200_000)
        assert len(await read_frames(reader, 5)) == 5
        assert await _closed(reader)
        assert ("framing_error", ("server", "too_many_errors")) in obs.calls
        writer.close()


async def test_a_burst_on_one_connection_lets_the_loop_run_between_frames() -> None:
    """A handler that never suspends must not hold the loop for a whole burst of frames."""
    total = 2000
    handled = 0
    first = asyncio.Event()

    def reply(payload: bytes) -> bytes:
        nonlocal handled
        handled += 1
        first.set()
        return b"MSH|^~\\&|X|Y|||1||ACK|A|P|2.3\rMSA|AA|A\r"

    async with LoopbackPeer(reply) as peer:
        reader, writer = await _connect(peer.port)
        writer.write(b"".join(mllp.encode_frame(message(f"B{i}")) for i in range(total)))
        await first.wait()
        # Without a yield between frames this task would resume only after the whole read
        # (hundreds of frames) had been handled.
        assert handled < 10
        assert len(await read_frames(reader, total)) == total
        writer.close()
