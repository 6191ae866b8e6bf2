"""The client against a real loopback peer, through the fault proxy where a fault is the point."""

from __future__ import annotations

import asyncio
import socket

import pytest

import mllp
from mllp.testing import Direction, FaultProxy, LoopbackPeer, ack_for, ack_matches, control_id
from tests.mllp.conftest import message
from tests.mllp.helpers import Recorder, msa2


async def test_round_trip_with_correlation() -> None:
    async with (
        LoopbackPeer() as peer,
        mllp.Client(peer.host, peer.port, correlate=ack_matches) as client,
    ):
        reply = await client.request(message("C1"), timeout=2)
        assert msa2(reply) == b"C1"
        assert peer.received == [message("C1")]


async def test_peer_drops_mid_frame_then_reconnect_succeeds() -> None:
    obs = Recorder()
    async with (
        LoopbackPeer() as peer,
        FaultProxy(peer.host, peer.port) as proxy,
        mllp.Client(proxy.host, proxy.port, observer=obs) as client,
    ):
        await client.request(message("A1"), timeout=2)
        proxy.drop_mid_frame()
        with pytest.raises(mllp.ConnectionLost):
            await client.request(message("A2"), timeout=2)
        reply = await client.request(message("A3"), timeout=2)
        assert msa2(reply) == b"A3"
        assert proxy.connections == 2
        assert obs.counts["reconnect"] == 1


async def test_reply_after_timeout_is_never_taken_for_a_later_request() -> None:
    # The proxy holds the reply to A1 until after the client gave up; it then arrives on the old
    # connection. A2 must get its own reply, not A1's (the Mirth late-ACK bug).
    obs = Recorder()
    async with (
        LoopbackPeer() as peer,
        FaultProxy(peer.host, peer.port) as proxy,
        mllp.Client(proxy.host, proxy.port, observer=obs) as client,
    ):
        proxy.stall()
        with pytest.raises(mllp.ReplyTimeout):
            await client.request(message("A1"), timeout=0.2)
        proxy.resume()
        reply = await client.request(message("A2"), timeout=2)
        assert msa2(reply) == b"A2"
        assert obs.counts["reply_timeout"] == 1
        assert proxy.connections == 2


async def test_late_reply_from_a_slow_handler_is_not_returned_later() -> None:
    release = asyncio.Event()

    async def slow_first(payload: bytes) -> bytes:
        if control_id(payload) == b"S1":
            await release.wait()
        return ack_for(payload)

    async with (
        LoopbackPeer(slow_first) as peer,
        mllp.Client(peer.host, peer.port) as client,
    ):
        with pytest.raises(mllp.ReplyTimeout):
            await client.request(message("S1"), timeout=0.2)
        release.set()
        assert msa2(await client.request(message("S2"), timeout=2)) == b"S2"


async def test_correlate_discards_a_foreign_reply_and_keeps_waiting() -> None:
    obs = Recorder()
    async with (
        LoopbackPeer() as peer,
        FaultProxy(peer.host, peer.port) as proxy,
        mllp.Client(proxy.host, proxy.port, correlate=ack_matches, observer=obs) as client,
    ):
        await client.request(message("F0"), timeout=2)  # connect first
        proxy.inject_junk(mllp.encode_frame(ack_for(message("SOMEONE-ELSE"))))
        assert msa2(await client.request(message("F1"), timeout=2)) == b"F1"
        assert obs.counts["foreign_reply"] == 1


async def test_unsolicited_frame_while_idle_retires_the_connection() -> None:
    obs = Recorder()
    async with (
        LoopbackPeer() as peer,
        FaultProxy(peer.host, peer.port) as proxy,
        mllp.Client(proxy.host, proxy.port, observer=obs) as client,
    ):
        proxy.duplicate_next_frame()
        assert msa2(await client.request(message("D1"), timeout=2)) == b"D1"
        await obs.until("foreign_reply")  # the duplicate arrived while nothing was asked
        assert not client.connected
        assert msa2(await client.request(message("D2"), timeout=2)) == b"D2"
        assert proxy.connections == 2


async def test_split_writes_and_junk_are_survived() -> None:
    obs = Recorder()
    async with (
        LoopbackPeer() as peer,
        FaultProxy(peer.host, peer.port) as proxy,
        mllp.Client(proxy.host, proxy.port, observer=obs) as client,
    ):
        proxy.split_writes(True, Direction.TO_CLIENT)
        proxy.split_writes(True, Direction.TO_SERVER)
        assert msa2(await client.request(message("P1"), timeout=5)) == b"P1"
        proxy.clear()
        proxy.inject_junk(b"garbage\n", Direction.TO_CLIENT)
        proxy.inject_junk(b"noise", Direction.TO_SERVER)
        assert msa2(await client.request(message("P2"), timeout=2)) == b"P2"
        assert obs.counts["junk_skipped"] == 1
        assert proxy.connections == 1


async def test_reset_mid_exchange_is_connection_lost() -> None:
    async with (
        LoopbackPeer() as peer,
        FaultProxy(peer.host, peer.port) as proxy,
        mllp.Client(proxy.host, proxy.port) as client,
    ):
        proxy.stall()
        pending = asyncio.ensure_future(client.request(message("R1"), timeout=5))
        await peer.wait_for_frames(1)
        proxy.reset()
        with pytest.raises(mllp.ConnectionLost):
            await pending
        proxy.clear()
        assert msa2(await client.request(message("R2"), timeout=2)) == b"R2"


async def test_peer_closing_an_idle_connection_is_noticed_before_reuse() -> None:
    server_obs = Recorder()
    async with (
        LoopbackPeer(idle_timeout=0.1, observer=server_obs) as peer,
        mllp.Client(peer.host, peer.port) as client,
    ):
        await client.request(message("I1"), timeout=2)
        await server_obs.until("idle_timeout")
        await server_obs.until("connection_closed")
        # The client must not write into the dead socket and then report a timeout.
        assert msa2(await client.request(message("I2"), timeout=2)) == b"I2"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_is_connect_error_and_backoff_fails_fast() -> None:
    obs = Recorder()
    client = mllp.Client("127.0.0.1", _closed_port(), observer=obs, backoff_initial=30)
    with pytest.raises(mllp.ConnectError, match="cannot connect"):
        await client.request(message("X1"), timeout=1)
    with pytest.raises(mllp.ConnectError, match="next attempt"):
        await client.request(message("X2"), timeout=1)
    assert obs.counts["connect_failed"] == 1
    await client.aclose()


async def test_connect_timeout_is_connect_error_not_reply_timeout() -> None:
    # A listening socket whose backlog is full never completes the handshake.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):  # fill the accept queue (size depends on the kernel)
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                fillers.append(s)
            client = mllp.Client("127.0.0.1", port, connect_timeout=0.2)
            with pytest.raises(mllp.ConnectError):
                await client.request(message("T1"), timeout=5)
        finally:
            for s in fillers:
                s.close()


async def test_silent_peer_is_reply_timeout() -> None:
    async with (
        LoopbackPeer(lambda payload: None) as peer,
        mllp.Client(peer.host, peer.port) as client,
    ):
        with pytest.raises(mllp.ReplyTimeout):
            await client.request(message("Q1"), timeout=0.1)


async def test_backoff_doubles_with_jitter_and_cap() -> None:
    client = mllp.Client("127.0.0.1", 1, backoff_initial=1.0, backoff_max=8.0)
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        delays = [client.backoff_delay(failures) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays)
        assert len(set(delays)) > 1


async def test_closed_client_refuses_requests() -> None:
    client = mllp.Client("127.0.0.1", 1)
    await client.aclose()
    with pytest.raises(mllp.ClientClosed):
        await client.request(message("Z"), timeout=1)


async def test_thousand_requests_over_eight_connections_in_order() -> None:
    async def yielding(payload: bytes) -> bytes:
        await asyncio.sleep(0)  # let the connections interleave on the server
        return ack_for(payload)

    async with LoopbackPeer(yielding) as peer:
        clients = [mllp.Client(peer.host, peer.port, correlate=ack_matches) for _ in range(8)]

        async def run(n: int, client: mllp.Client) -> list[bytes]:
            got = []
            for i in range(125):
                got.append(msa2(await client.request(message(f"{n}-{i}"), timeout=5)))
            return got

        results = await asyncio.gather(*(run(n, c) for n, c in enumerate(clients)))
        for n, got in enumerate(results):
            assert got == [f"{n}-{i}".encode() for i in range(125)]
        # Per connection, the server saw the frames in the order they were sent.
        by_conn: dict[int, list[bytes]] = {}
        for payload, info in zip(peer.received, peer.peers, strict=True):
            by_conn.setdefault(info.connection_id, []).append(control_id(payload))
        assert len(by_conn) == 8
        for ids in by_conn.values():
            n = ids[0].split(b"-")[0]
            assert ids == [b"%s-%d" % (n, i) for i in range(125)]
        for c in clients:
            await c.aclose()


async def test_pool_spreads_concurrent_requests() -> None:
    async with (
        LoopbackPeer() as peer,
        mllp.ClientPool(peer.host, peer.port, size=4, correlate=ack_matches) as pool,
    ):
        replies = await asyncio.gather(
            *(pool.request(message(f"P{i}"), timeout=5) for i in range(50))
        )
        assert [msa2(r) for r in replies] == [f"P{i}".encode() for i in range(50)]
        assert len({p.connection_id for p in peer.peers}) <= 4


def test_works_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> bytes:
        async with (
            LoopbackPeer() as peer,
            mllp.Client(peer.host, peer.port) as client,
        ):
            return await client.request(message("UV1"), timeout=2)

    assert msa2(uvloop.run(main())) == b"UV1"


async def test_oversized_reply_is_a_framing_error_and_the_client_recovers() -> None:
    def big_then_small(payload: bytes) -> bytes:
        if control_id(payload) == b"BIG":
            return ack_for(payload) + b"NTE|" + b"x" * 5000 + b"\r"
        return ack_for(payload)

    async with (
        LoopbackPeer(big_then_small) as peer,
        mllp.Client(peer.host, peer.port, max_frame_size=1024) as client,
    ):
        with pytest.raises(mllp.FramingError) as info:
            await client.request(message("BIG"), timeout=2)
        assert info.value.kind is mllp.FramingErrorKind.OVERSIZE
        assert msa2(await client.request(message("SMALL"), timeout=2)) == b"SMALL"


async def test_delay_within_the_timeout_is_fine_beyond_it_is_a_reply_timeout() -> None:
    obs = Recorder()
    async with (
        LoopbackPeer() as peer,
        FaultProxy(peer.host, peer.port) as proxy,
        mllp.Client(proxy.host, proxy.port, observer=obs) as client,
    ):
        proxy.set_delay(0.05)
        assert msa2(await client.request(message("W1"), timeout=2)) == b"W1"
        assert obs.counts["round_trip"] == 1
        rtt = next(args[0] for name, args in obs.calls if name == "round_trip")
        assert rtt >= 0.05
        proxy.set_delay(0.5)
        with pytest.raises(mllp.ReplyTimeout):
            await client.request(message("W2"), timeout=0.1)
