"""The server on real loopback sockets: policies, limits, ordering, TLS and shutdown."""

from __future__ import annotations

import asyncio
import ssl

import pytest

import mllp
from mllp.testing import LoopbackPeer, ack_for, ack_matches, control_id
from tests.mllp.conftest import PKI, message
from tests.mllp.helpers import Recorder, msa2, read_frames


async def test_pipelined_frames_in_one_write_are_answered_in_order() -> None:
    async with LoopbackPeer() as peer:
        reader, writer = await asyncio.open_connection(peer.host, peer.port)
        writer.write(b"".join(mllp.encode_frame(message(f"M{i}")) for i in range(3)))
        replies = await read_frames(reader, 3)
        assert [msa2(r) for r in replies] == [b"M0", b"M1", b"M2"]
        writer.close()


async def test_oversized_frame_closes_only_that_connection() -> None:
    obs = Recorder()
    async with (
        LoopbackPeer(max_frame_size=1024, observer=obs) as peer,
        mllp.Client(peer.host, peer.port) as good,
        mllp.Client(peer.host, peer.port) as bad,
    ):
        await good.request(message("G1"), timeout=2)
        with pytest.raises(mllp.ConnectionLost):
            await bad.request(message("B1") + b"OBX|" + b"x" * 2000 + b"\r", timeout=2)
        assert msa2(await good.request(message("G2"), timeout=2)) == b"G2"
        assert ("framing_error", ("server", "oversize")) in obs.calls


async def test_oversized_frame_can_be_answered_with_a_nak_instead() -> None:
    def nak(error: mllp.FramingError, peer: mllp.PeerInfo) -> bytes:
        return b"MSH|^~\\&|RIS|RADCO|||20250101||ACK|N1|P|2.3\rMSA|AR|\r"

    async with (
        LoopbackPeer(max_frame_size=1024, on_framing_error=nak) as peer,
        mllp.Client(peer.host, peer.port) as client,
    ):
        reply = await client.request(b"MSH|" + b"x" * 5000, timeout=2)
        assert b"MSA|AR|" in reply
        # The rest of the big frame was skipped; the connection carries on.
        assert msa2(await client.request(message("N2"), timeout=2)) == b"N2"
        assert len(peer.server.sockets) == 1 and peer.server.connection_count == 1


async def test_handler_exception_closes_only_that_connection() -> None:
    obs = Recorder()

    def reply(payload: bytes) -> bytes:
        if control_id(payload) == b"BOOM":
            raise RuntimeError("handler bug")
        return ack_for(payload)

    async with (
        LoopbackPeer(reply, observer=obs) as peer,
        mllp.Client(peer.host, peer.port) as one,
        mllp.Client(peer.host, peer.port) as two,
    ):
        await two.request(message("T1"), timeout=2)
        with pytest.raises(mllp.ConnectionLost):
            await one.request(message("BOOM"), timeout=2)
        assert msa2(await two.request(message("T2"), timeout=2)) == b"T2"
        assert msa2(await one.request(message("O2"), timeout=2)) == b"O2"  # reconnects
        assert obs.counts["handler_error"] == 1


async def test_handler_error_hook_can_answer() -> None:
    def reply(payload: bytes) -> bytes:
        raise ValueError("cannot store")

    def on_error(exc: Exception, peer: mllp.PeerInfo) -> bytes:
        return b"MSH|^~\\&|X|Y|||1||ACK|E1|P|2.3\rMSA|AE||" + str(exc).encode() + b"\r"

    async with (
        LoopbackPeer(reply, on_handler_error=on_error) as peer,
        mllp.Client(peer.host, peer.port) as client,
    ):
        assert b"MSA|AE||cannot store" in await client.request(message("E1"), timeout=2)
        assert b"MSA|AE|" in await client.request(message("E2"), timeout=2)


async def test_commit_ack_mode() -> None:
    obs = Recorder()

    def reply(payload: bytes) -> bytes:
        if control_id(payload) == b"NAKME":
            raise RuntimeError("store failed")
        return ack_for(payload)

    async with (
        LoopbackPeer(reply, commit_ack=True) as peer,
        mllp.Client(peer.host, peer.port, observer=obs) as client,
    ):
        assert msa2(await client.request(message("C1"), timeout=2)) == b"C1"
        assert ("commit_ack_received", ("client", True)) in obs.calls
        with pytest.raises(mllp.CommitRejected):
            await client.request(message("NAKME"), timeout=2)
        assert msa2(await client.request(message("C2"), timeout=2)) == b"C2"


async def test_max_connections_turns_extra_connections_away_when_none_is_idle() -> None:
    obs = Recorder()
    async with LoopbackPeer(max_connections=1, observer=obs) as peer:
        busy_reader, busy = await asyncio.open_connection(peer.host, peer.port)
        busy.write(b"\x0bMSH|")  # a frame in progress: not idle, so not evicted
        await busy.drain()
        await obs.until("connection_opened")
        reader, writer = await asyncio.open_connection(peer.host, peer.port)
        assert await reader.read() == b""  # closed straight away
        writer.close()
        assert obs.counts["connection_rejected"] == 1
        busy.write(message("F2")[4:] + b"\x1c\r")
        assert [msa2(r) for r in await read_frames(busy_reader, 1)] == [b"F2"]
        busy.close()


async def test_read_back_pressure_pauses_and_resumes() -> None:
    obs = Recorder()
    gate = asyncio.Event()

    async def blocked(payload: bytes) -> bytes:
        await gate.wait()
        return ack_for(payload)

    async with LoopbackPeer(blocked, observer=obs, high_water_frames=4) as peer:
        reader, writer = await asyncio.open_connection(peer.host, peer.port)
        writer.write(b"".join(mllp.encode_frame(message(f"Q{i}")) for i in range(50)))
        await obs.until("reading_paused")
        gate.set()
        replies = await read_frames(reader, 50)
        assert [msa2(r) for r in replies] == [f"Q{i}".encode() for i in range(50)]
        writer.close()


async def test_graceful_close_lets_in_flight_handler_finish() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(payload: bytes) -> bytes:
        started.set()
        await release.wait()
        return ack_for(payload)

    peer = await LoopbackPeer(slow).start()
    client = mllp.Client(peer.host, peer.port)
    in_flight = asyncio.ensure_future(client.request(message("G1"), timeout=5))
    await started.wait()
    closing = asyncio.ensure_future(peer.server.aclose(grace=5))
    await asyncio.sleep(0)  # let aclose stop the listener (not waiting for time to pass)
    with pytest.raises(mllp.ConnectError):
        await mllp.Client(peer.host, peer.port).request(message("late"), timeout=1)
    release.set()
    assert msa2(await in_flight) == b"G1"
    await closing
    await client.aclose()


async def test_graceful_close_aborts_a_handler_that_overruns_the_grace() -> None:
    started = asyncio.Event()

    async def stuck(payload: bytes) -> bytes:
        started.set()
        await asyncio.Event().wait()
        return b""

    peer = await LoopbackPeer(stuck).start()
    client = mllp.Client(peer.host, peer.port)
    in_flight = asyncio.ensure_future(client.request(message("G2"), timeout=5))
    await started.wait()
    await peer.server.aclose(grace=0.1)
    with pytest.raises(mllp.ConnectionLost):
        await in_flight
    await client.aclose()


async def test_lenient_server_answers_a_sender_that_omits_the_final_cr() -> None:
    async with LoopbackPeer(lenient=True) as peer:
        reader, writer = await asyncio.open_connection(peer.host, peer.port)
        writer.write(b"\x0b" + message("L1") + b"\x1c")  # no CR, and the sender now waits
        assert msa2((await read_frames(reader, 1))[0]) == b"L1"
        writer.close()


def _server_context(pki: PKI, *, mutual: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    if mutual:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki.ca)
    return ctx


def _client_context(pki: PKI, *, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if with_cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    return ctx


async def test_tls_round_trip(pki: PKI) -> None:
    async with (
        LoopbackPeer(ssl=_server_context(pki, mutual=False)) as peer,
        mllp.Client(
            "127.0.0.1", peer.port, ssl=_client_context(pki, with_cert=False), correlate=ack_matches
        ) as client,
    ):
        assert msa2(await client.request(message("TLS1"), timeout=5)) == b"TLS1"
        assert peer.peers[0].tls_version is not None
        assert peer.peers[0].peercert is None


async def test_mutual_tls_round_trip_exposes_the_client_certificate(pki: PKI) -> None:
    async with (
        LoopbackPeer(ssl=_server_context(pki, mutual=True)) as peer,
        mllp.Client("127.0.0.1", peer.port, ssl=_client_context(pki, with_cert=True)) as client,
    ):
        assert msa2(await client.request(message("MTLS1"), timeout=5)) == b"MTLS1"
        assert peer.peers[0].subject_cn == "sms-sender"
        assert peer.peers[0].peercert_der


async def test_mutual_tls_without_a_client_certificate_is_refused(pki: PKI) -> None:
    async with LoopbackPeer(ssl=_server_context(pki, mutual=True)) as peer:
        anonymous = mllp.Client("127.0.0.1", peer.port, ssl=_client_context(pki, with_cert=False))
        # TLS 1.3 finishes the client's handshake before the server checks the certificate, so
        # the refusal shows as either a failed connect or a lost connection.
        with pytest.raises((mllp.ConnectError, mllp.ConnectionLost)):
            await anonymous.request(message("ANON"), timeout=5)
        await anonymous.aclose()
        async with mllp.Client(
            "127.0.0.1", peer.port, ssl=_client_context(pki, with_cert=True)
        ) as good:
            assert msa2(await good.request(message("OK"), timeout=5)) == b"OK"
        assert peer.received == [message("OK")]


async def test_tls_client_rejects_an_untrusted_server(pki: PKI) -> None:
    async with LoopbackPeer(ssl=_server_context(pki, mutual=False)) as peer:
        client = mllp.Client("127.0.0.1", peer.port, ssl=ssl.create_default_context())
        with pytest.raises(mllp.ConnectError):
            await client.request(message("X"), timeout=5)
        await client.aclose()


async def test_port_zero_reports_the_bound_port() -> None:
    async def handler(payload: bytes, peer: mllp.PeerInfo) -> bytes:
        return ack_for(payload)

    async with await mllp.start_server(handler, "127.0.0.1", 0) as server:
        assert server.port > 0
        assert server.sockets
        async with mllp.Client("127.0.0.1", server.port) as client:
            assert msa2(await client.request(message("P0"), timeout=2)) == b"P0"
