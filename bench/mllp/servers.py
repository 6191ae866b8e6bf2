"""The servers under test, each run in its own process pinned to one core.

``python -m bench.mllp.servers KIND PORT_FILE [--uvloop] [--cpu N]`` binds 127.0.0.1:0, writes the
port to PORT_FILE and serves until killed. Every server answers each message with an ACK whose MSA-2
is that message's MSH-10 (the load generator checks it). Kinds:

- ``radsched``: what the daemon does per frame before any storage: this package's ``mllp`` server,
  ``channels.parse`` and ``channels.ack.build_ack``;
- ``mllp``: this package's ``mllp`` server with the ACK built by hand (the transport's own cost);
- ``hl7``: python-hl7's ``hl7.mllp`` streams server answering ``message.create_ack()``;
- ``bare``: a bare ``asyncio.Protocol`` using ``bytearray.find`` and building its ACK by hand (the
  ceiling of what Python can do on this loop; no size limit, no resync, no ordering guarantees).

node's ``simple-hl7`` server is in ``bench/node/server.js``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import cast

_counter = itertools.count(1)


def ack_by_hand(payload: bytes) -> bytes:
    """The least an ACK can cost in Python: swap MSH-3/4 with MSH-5/6, echo MSH-10 into MSA-2."""
    msh = payload[: payload.find(b"\r")].split(b"|")
    trigger = msh[8].split(b"^")[1] if b"^" in msh[8] else b""
    stamp = time.strftime("%Y%m%d%H%M%S").encode()
    return b"".join(
        (
            b"MSH|^~\\&|", msh[4], b"|", msh[5], b"|", msh[2], b"|", msh[3], b"|", stamp,
            b"||ACK^", trigger, b"|A", str(next(_counter)).encode(), b"|P|", msh[11],
            b"\rMSA|AA|", msh[9], b"\r",
        )
    )  # fmt: skip


async def _serve_mllp(port_file: Path) -> None:
    import mllp

    async def handler(payload: bytes, peer: mllp.PeerInfo) -> bytes:
        return ack_by_hand(payload)

    server = await mllp.start_server(handler, "127.0.0.1", 0)
    port_file.write_text(str(server.port))
    await asyncio.Event().wait()


async def _serve_radsched(port_file: Path) -> None:
    import mllp
    from channels import parse
    from channels.ack import build_ack
    from channels.model import AckCode

    async def handler(payload: bytes, peer: mllp.PeerInfo) -> bytes:
        return build_ack(parse(payload), AckCode.AA).payload

    server = await mllp.start_server(handler, "127.0.0.1", 0)
    port_file.write_text(str(server.port))
    await asyncio.Event().wait()


async def _serve_hl7(port_file: Path) -> None:
    import hl7.mllp

    async def on_client(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while True:
                message = await reader.readmessage()
                writer.writemessage(message.create_ack())
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    server = await hl7.mllp.start_hl7_server(on_client, "127.0.0.1", 0, encoding="utf-8")
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    await asyncio.Event().wait()


class _Bare(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.scan = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so cast instead of isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\x1c\r", self.scan)
            if end < 0:
                self.scan = max(0, len(buf) - 1)
                return
            payload = bytes(buf[1:end])
            del buf[: end + 2]
            self.scan = 0
            self.transport.write(b"\x0b" + ack_by_hand(payload) + b"\x1c\r")


async def _serve_bare(port_file: Path) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Bare, "127.0.0.1", 0)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    await asyncio.Event().wait()


SERVERS: dict[str, Callable[[Path], Coroutine[None, None, None]]] = {
    "radsched": _serve_radsched,
    "mllp": _serve_mllp,
    "hl7": _serve_hl7,
    "bare": _serve_bare,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("port_file", type=Path)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    serve = SERVERS[args.kind](args.port_file)
    if args.uvloop:
        import uvloop

        uvloop.run(serve)
    else:
        asyncio.run(serve)


if __name__ == "__main__":
    main()
