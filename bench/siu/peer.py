"""An ACKing EMR for the benchmark, in its own process: ``python -m bench.siu.peer PORT [PORT...]``.

Listens on each port (0 = any; the bound ports are printed on one line) with the ``mllp`` server and
answers AA with MSA-2 = MSH-10, built from the raw header like a fast interface engine would.
"""

from __future__ import annotations

import asyncio
import sys

import mllp
from mllp.testing import ack_for


async def serve(ports: list[int]) -> None:
    async def handler(payload: bytes, peer: mllp.PeerInfo | None) -> bytes:
        return ack_for(payload)

    servers = [await mllp.start_server(handler, "127.0.0.1", port) for port in ports]
    print(" ".join(str(s.port) for s in servers), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve([int(p) for p in sys.argv[1:]]))
