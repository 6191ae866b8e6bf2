"""``start_server(reuse_port=True)``: two servers (two daemons, in production) share one address and
the kernel spreads new connections between them (issue 16 item 4)."""

from __future__ import annotations

import pytest

import mllp

pytestmark = pytest.mark.skipif(
    not hasattr(__import__("socket"), "SO_REUSEPORT"), reason="no SO_REUSEPORT on this platform"
)


def _answering(name: bytes) -> mllp.Handler:
    async def handler(payload: bytes, peer: mllp.PeerInfo) -> bytes:
        return b"MSH|^~\\&|" + name + b"\rMSA|AA|" + payload.split(b"|")[9] + b"\r"

    return handler


async def test_two_servers_share_a_port_and_both_get_connections() -> None:
    first = await mllp.start_server(_answering(b"ONE"), "127.0.0.1", 0, reuse_port=True)
    second = await mllp.start_server(_answering(b"TWO"), "127.0.0.1", first.port, reuse_port=True)
    seen: set[bytes] = set()
    try:
        # The kernel hashes each connection's addresses: over 200 connections both servers are
        # chosen unless the spreading is broken (each alone has a 2^-199 chance of all of them).
        for n in range(200):
            async with mllp.Client("127.0.0.1", first.port) as client:
                msg = f"MSH|^~\\&|A|B|C|D|20260101||ORM^O01|C{n}|P|2.3\r".encode()
                reply = await client.request(msg, timeout=10)
            assert f"MSA|AA|C{n}\r".encode() in reply
            seen.add(reply.split(b"|")[2].split(b"\r")[0])
            if seen == {b"ONE", b"TWO"}:
                break
    finally:
        await first.aclose()
        await second.aclose()
    assert seen == {b"ONE", b"TWO"}


async def test_without_it_the_second_bind_fails() -> None:
    first = await mllp.start_server(_answering(b"ONE"), "127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            await mllp.start_server(_answering(b"TWO"), "127.0.0.1", first.port)
    finally:
        await first.aclose()
