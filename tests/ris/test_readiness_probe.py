"""/readyz's RIS check while the RIS connection is down: one probe connection for everyone who asks
within READY_CACHE_S, never one per request (issue 11, item 6)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import CollectorRegistry

from radsched.hl7metrics import HL7Metrics
from radsched.scheduling.client import READY_CACHE_S, RisClient
from tests.waiting import eventually


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Listener:
    """A real listening socket that counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0

    def drain(self) -> int:
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return self.accepted
            conn.close()
            self.accepted += 1

    async def wait_for(self, count: int) -> None:
        async def reached() -> bool:
            return self.drain() >= count

        await eventually(reached, what=f"{count} connections to the RIS")


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.sock.close()


@pytest.fixture
async def ris(listener: Listener) -> AsyncIterator[tuple[RisClient, Monotonic]]:
    """A RIS client of the listener, its monotonic clock injected."""
    clock = Monotonic()
    client = RisClient(
        "127.0.0.1",
        listener.port,
        timeout=2.0,
        metrics=HL7Metrics(CollectorRegistry()),
        monotonic=clock,
    )
    yield client, clock
    await client.aclose()


async def test_ready_probes_once_per_two_seconds_however_many_ask(
    listener: Listener, ris: tuple[RisClient, Monotonic]
) -> None:
    client, clock = ris
    # Concurrent calls share one probe; a call within the window reuses its answer.
    assert await asyncio.gather(*(client.ready() for _ in range(5))) == [None] * 5
    clock.now += READY_CACHE_S - 0.1
    assert await client.ready() is None
    await listener.wait_for(1)
    assert listener.drain() == 1
    # After the window, the next call probes again.
    clock.now += 0.2
    assert await client.ready() is None
    await listener.wait_for(2)
    assert listener.drain() == 2


async def test_a_ris_that_went_away_is_reported_once_the_window_is_over(
    listener: Listener, ris: tuple[RisClient, Monotonic]
) -> None:
    client, clock = ris
    assert await client.ready() is None
    listener.sock.close()  # the RIS goes away
    assert await client.ready() is None  # within the window: the answer just given
    clock.now += READY_CACHE_S
    reason = await client.ready()
    assert reason is not None and "unreachable" in reason
