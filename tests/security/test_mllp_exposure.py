"""The MLLP listener against anyone who reaches it (issue 11 item 3), through the real daemon.

The review's findings: 64 silent connections locked the RIS out until the idle timeout, 200,000
tiny bad frames on one connection held the event loop (``/healthz`` took 6.6 s), and an 8 MiB
PID-5 was accepted and stored. 127.0.0.0/8 is loopback on Linux, so 127.0.0.2 plays another host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from channels import AckCode, parse, read_ack
from mllp import encode_frame
from radsched.inbound.exposure import warn_if_exposed
from radsched.settings import HostPort
from tests.channels.hl7check import assert_valid_hl7
from tests.security.conftest import Secured, SecuredFactory

ATTACKER = "127.0.0.2"
ORDER = (
    (Path(__file__).resolve().parents[2] / "fixtures" / "orders" / "ORM_O01.NW.2.3.hl7")
    .read_bytes()
    .replace(b"\r\n", b"\r")
    .replace(b"\n", b"\r")
)


async def _connect(
    s: Secured, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = s.mllp
    return await asyncio.open_connection(host, port, local_addr=(source, 0))


async def _exchange(s: Secured, payload: bytes, source: str = "127.0.0.1") -> bytes:
    reader, writer = await _connect(s, source)
    try:
        writer.write(encode_frame(payload))
        async with asyncio.timeout(10):
            return (await reader.readuntil(b"\x1c\r"))[1:-2]
    finally:
        writer.close()


def _probe(cid: str) -> bytes:
    return (
        f"MSH|^~\\&|PROBE|LAB|RADSCHED|RADSCHED|20260601100000||ADT^A01|{cid}|P|2.5.1\r"
    ).encode()


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        async with asyncio.timeout(10):
            while await reader.read(65536):
                pass
        return True
    except ConnectionResetError:
        return True


async def test_silent_connections_at_the_limit_do_not_lock_the_ris_out(
    secured: SecuredFactory,
) -> None:
    async with secured(mllp_max_connections=8, mllp_idle_timeout_s=600) as s:
        silent = [await _connect(s, ATTACKER) for _ in range(8)]
        # Before: accepted and closed at once, for as long as the silent ones stayed (600 s).
        assert b"PROBE1" in await _exchange(s, _probe("PROBE1"))
        assert b"PROBE2" in await _exchange(s, _probe("PROBE2"))
        for _, writer in silent:
            writer.close()


async def test_one_address_holds_at_most_its_share_of_connections(
    secured: SecuredFactory,
) -> None:
    async with secured(mllp_max_connections_per_peer=2) as s:
        first, *rest = [await _connect(s, ATTACKER) for _ in range(3)]
        assert await _closed(first[0])  # the oldest idle one made room for the third
        for _, writer in [first, *rest]:
            writer.close()


async def test_a_peer_outside_mllp_allowed_peers_is_not_served(secured: SecuredFactory) -> None:
    async with secured(mllp_allowed_peers="127.0.0.1/32, 10.20.0.0/16") as s:
        reader, writer = await _connect(s, ATTACKER)
        writer.write(encode_frame(_probe("EVIL1")))
        assert await _closed(reader)
        writer.close()
        assert b"GOOD1" in await _exchange(s, _probe("GOOD1"))


async def test_a_flood_of_bad_frames_neither_stalls_the_loop_nor_holds_the_connection(
    secured: SecuredFactory,
) -> None:
    async with secured(mllp_max_framing_errors=10) as s:
        # 200,000 tiny framing errors: ten NAKs, then the connection is closed.
        reader, writer = await _connect(s, ATTACKER)
        writer.write(b"\x0bX\x1cX" * 200_000)
        assert await _closed(reader)
        writer.close()
        # 20,000 well-framed frames that are not HL7, each answered with an AR: meanwhile the
        # daemon keeps answering others. Before, one read's worth (~16,000) ran without a pause.
        flood_reader, flood = await _connect(s, ATTACKER)
        flood.write(b"\x0bX\x1c\r" * 20_000)
        await flood_reader.readuntil(b"\x1c\r")  # the flood is being handled
        started = time.monotonic()
        async with s.http.get(s.base + "/healthz") as response:
            assert response.status == 200
        assert time.monotonic() - started < 1.0
        assert b"PROBE3" in await _exchange(s, _probe("PROBE3"))
        flood.close()


async def test_an_oversized_field_is_refused_with_a_clear_ae(secured: SecuredFactory) -> None:
    async with secured(mllp_max_field_bytes=4096) as s:
        pid = next(line for line in ORDER.split(b"\r") if line.startswith(b"PID|"))
        fields = pid.split(b"|")
        fields[5] = b"A" * 5000 + b"^ALPHA"
        big = ORDER.replace(pid, b"|".join(fields))
        reply = await _exchange(s, big)
        assert_valid_hl7(reply)
        ack = read_ack(parse(reply))
        assert ack.code is AckCode.AE
        assert b"PID-5 is 5006 bytes; the limit is 4096 (MLLP_MAX_FIELD_BYTES)" in reply
        stored = await s.daemon.db.fetchval(
            "test", "SELECT count(*) FROM inbound_messages WHERE ack_code = 'AA'"
        )
        assert stored == 0


async def test_the_default_frame_limit_refuses_an_8_mib_pid_5(secured: SecuredFactory) -> None:
    async with secured() as s:
        assert s.daemon.settings.mllp_max_frame_bytes == 1024 * 1024
        pid = next(line for line in ORDER.split(b"\r") if line.startswith(b"PID|"))
        fields = pid.split(b"|")
        fields[5] = b"A" * (8 << 20)
        reply = await _exchange(s, ORDER.replace(pid, b"|".join(fields)))
        assert read_ack(parse(reply)).code is AckCode.AR and b"oversize" in reply


async def test_a_long_control_id_is_never_echoed_whole(secured: SecuredFactory) -> None:
    # An MSH-10 past the 199 characters any version allows is refused (channels.ack.header_refusal);
    # the refusal is valid HL7 and carries at most 199 characters of it, never the 3,000 sent.
    async with secured() as s:
        reply = await _exchange(s, _probe("C" * 3000))
        assert_valid_hl7(reply)
        msa = next(line for line in reply.split(b"\r") if line.startswith(b"MSA|"))
        assert msa.split(b"|")[1] == b"AR"
        assert len(msa.split(b"|")[2]) <= 199
        assert b"C" * 200 not in reply


@pytest.mark.parametrize(
    ("host", "tls", "allow", "warned"),
    [
        ("0.0.0.0", False, False, True),
        ("10.1.2.3", False, False, True),
        ("::", False, False, True),
        ("0.0.0.0", True, False, False),
        ("0.0.0.0", False, True, False),
        ("127.0.0.1", False, False, False),
        ("::1", False, False, False),
        ("localhost", False, False, False),
    ],
)
def test_start_up_warns_about_a_listener_anyone_can_reach(
    caplog: pytest.LogCaptureFixture, host: str, tls: bool, allow: bool, warned: bool
) -> None:
    from mllp import PeerAllowList

    allow_list = PeerAllowList.parse("10.0.0.0/8") if allow else None
    with caplog.at_level(logging.WARNING, "radsched.exposure"):
        assert warn_if_exposed(HostPort(host, 2575), tls=tls, allow_list=allow_list) is warned
    assert ("MLLP_ALLOWED_PEERS" in caplog.text) is warned
