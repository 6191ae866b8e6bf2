"""The floor under a slot query: aiohttp and one bare MLLP exchange with the same RIS, nothing else.

``python -m bench.gateway.floor HOST:PORT`` (the RIS) prints ``port=N`` and serves
``GET /api/ris/available-slots`` until killed. Each request sends the same slot query, built once
by the ch10-2.5.1 dialect, to the RIS over a bare ``asyncio.Protocol``, waits for the answer's
frame without reading it, and answers the JSON body built once from the first answer.

So a request here costs aiohttp's request path, an MLLP round trip and the same bytes out, and
none of what radsched adds: the API key and rate limiter, validation, building the query, checking
and reading the answer, the JSON, metrics and logs. ``bench.gateway`` runs it pinned to the daemon's
core and measures its CPU per request beside the daemon's: the least any daemon on this stack
(aiohttp, asyncio, uvloop) could spend on a slot query.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from datetime import datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from aiohttp import web

from channels import get_dialect
from radsched.rest.scheduling import SlotsBody

START, END = b"\x0b", b"\x1c\r"
TZ = ZoneInfo("America/New_York")


class _RisConnection(asyncio.Protocol):
    """One query in flight; the answer is the bytes up to the end block, unread."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[bytes] | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(END)
        if end >= 0 and self._waiter is not None and not self._waiter.done():
            frame = bytes(self._buffer[1:end])
            del self._buffer[: end + len(END)]
            self._waiter.set_result(frame)

    async def ask(self, frame: bytes) -> bytes:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(frame)
        return await self._waiter


async def serve(ris_host: str, ris_port: int) -> None:
    loop = asyncio.get_running_loop()
    _, ris = await loop.create_connection(_RisConnection, ris_host, ris_port)
    dialect = get_dialect("ch10-2.5.1", tz=TZ)
    day = datetime.combine(datetime.now(TZ).date() + timedelta(days=7), datetime.min.time(), TZ)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    query = dialect.build_slot_query("DTWN", "CR", day, day + timedelta(days=1))
    frame = START + query.payload + END
    slots = dialect.parse_slot_response(await ris.ask(frame), query.control_id)
    body = SlotsBody(TZ)(slots).encode()

    async def available_slots(request: web.Request) -> web.Response:
        await ris.ask(frame)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/ris/available-slots", available_slots)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    listening = socket.create_server(("127.0.0.1", 0))  # port 0: the kernel picks a free one
    await web.SockSite(runner, listening).start()
    print(f"port={listening.getsockname()[1]} slots={len(slots)}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    host, _, port = sys.argv[1].rpartition(":")
    try:
        import uvloop
    except ImportError:  # the daemon runs on asyncio then too
        asyncio.run(serve(host, int(port)))
    else:
        uvloop.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
