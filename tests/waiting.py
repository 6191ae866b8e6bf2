"""The one bounded poll of the test suite, for state that has no event to await: rows another
process (or a background task after its own commit) writes, a killed client's session that
PostgreSQL notices on its own schedule. Everything that can be awaited is awaited instead."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 15.0,
    what: str = "condition",
    every: float = 0.02,
    between: Callable[[], None] | None = None,
) -> None:
    """Await ``check()`` until it is true; fail naming ``what`` after ``timeout`` seconds.
    ``between`` runs before each retry (e.g. to wake a sender instead of waiting for its timer)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if between is not None:
            between()
        await asyncio.sleep(every)
