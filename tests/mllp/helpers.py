"""Test helpers: an observer that records every hook call and lets a test await one."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from mllp import Observer


def msa2(reply: bytes) -> bytes:
    """MSA-2 of an ACK (the control id it acknowledges)."""
    return reply.split(b"MSA|", 1)[1].split(b"|")[1].rstrip(b"\r")


async def read_frames(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    """Read ``count`` MLLP frames from a plain stream (a client that is not ours)."""
    frames = []
    for _ in range(count):
        block = await reader.readuntil(b"\x1c\r")
        frames.append(block[1:-2])
    return frames


class Recorder(Observer):
    """Counts every :class:`mllp.Observer` hook by name; ``await until(name, n)`` waits for it."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = asyncio.Event()

    def _record(self, name: str, args: tuple[Any, ...]) -> None:
        self.counts[name] += 1
        self.calls.append((name, args))
        self._changed.set()

    async def until(self, name: str, count: int = 1, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while self.counts[name] < count:
                self._changed.clear()
                await self._changed.wait()


def _make_hook(name: str) -> Any:
    def hook(self: Recorder, *args: Any) -> None:
        self._record(name, args)

    return hook


for _name in [n for n in vars(Observer) if not n.startswith("_")]:
    setattr(Recorder, _name, _make_hook(_name))
