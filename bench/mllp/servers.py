"""The servers under test, each run in its own process pinned to one core.

``python -m bench.mllp.servers KIND PORT_FILE [--uvloop] [--cpu N]`` binds 127.0.0.1:0, writes the
port to PORT_FILE and serves until killed. Kinds:

- ``mllp``: this package's server answering a prebuilt ACK from an async handler;
- ``hl7``: python-hl7's ``hl7.mllp`` streams server answering ``message.create_ack()``;
- ``bare``: a bare ``asyncio.Protocol`` using ``bytearray.find`` and the prebuilt ACK (the ceiling of
  what Python can do on this loop; no size limit, no resync, no ordering guarantees);
- ``mllp-echo``: this package's server answering a small ACK, used for the large-frame runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import cast

from bench.mllp.messages import ACK

ACK_FRAME = b"\x0b" + ACK + b"\x1c\r"


async def _serve_mllp(port_file: Path) -> None:
    import mllp

    async def handler(payload: bytes, peer: mllp.PeerInfo) -> bytes:
        return ACK

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
            del buf[: end + 2]
            self.scan = 0
            self.transport.write(ACK_FRAME)


async def _serve_bare(port_file: Path) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Bare, "127.0.0.1", 0)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    await asyncio.Event().wait()


SERVERS = {"mllp": _serve_mllp, "hl7": _serve_hl7, "bare": _serve_bare}


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
