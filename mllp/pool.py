"""A fixed-size set of :class:`~mllp.client.Client` connections to one destination.

Use it when several requests to the same peer may be outstanding at once (e.g. concurrent REST calls
to the RIS). Ordering between requests is not preserved across connections; per-destination FIFO
delivery (SIU to an EMR) must use a single :class:`~mllp.client.Client` instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mllp._lifecycle import AsyncClosing
from mllp.client import Client
from mllp.errors import ClientClosed, ReplyTimeout


class ClientPool(AsyncClosing):
    """``size`` lazily connected clients; ``request`` borrows an idle one.

    Keyword arguments are passed to each :class:`~mllp.client.Client`. ``request``'s ``timeout`` also
    bounds the wait for a free connection (raising :class:`ReplyTimeout` when none frees up).
    """

    def __init__(self, host: str, port: int, *, size: int = 4, **client_kwargs: Any) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.host = host
        self.port = port
        self._clients = [Client(host, port, **client_kwargs) for _ in range(size)]
        # LIFO: the most recently used connection is the one most likely still alive and warm.
        self._idle: asyncio.LifoQueue[Client] = asyncio.LifoQueue()
        for client in reversed(self._clients):
            self._idle.put_nowait(client)
        self._closed = False

    @property
    def size(self) -> int:
        return len(self._clients)

    async def request(self, payload: bytes, timeout: float) -> bytes:
        """As :meth:`mllp.Client.request`, on whichever connection is free first."""
        if self._closed:
            raise ClientClosed("pool is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout(timeout):
                client = await self._idle.get()
        except TimeoutError:
            raise ReplyTimeout(f"no free connection to {self.host}:{self.port}") from None
        try:
            return await client.request(payload, max(0.0, deadline - loop.time()))
        finally:
            self._idle.put_nowait(client)

    async def aclose(self) -> None:
        self._closed = True
        for client in self._clients:
            await client.aclose()
