"""The conversations' clock: feed ``Tick`` when a ``wake_at`` comes due.

Deadlines are stored on the conversation rows (``wake_at``: end of quiet hours, a RIS call left
unanswered, expiry), so the timer keeps no state of its own and survives restarts: it sleeps until
the nearest ``wake_at`` of a live conversation (at most :data:`MAX_SLEEP_S`, a safety sweep), runs
one pass, and looks again. Time comes from the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta

from radsched.storage import conversations
from radsched.storage.db import Database
from radsched.storage.pg import UNREACHABLE
from radsched.tasks import spawn

log = logging.getLogger("radsched.sms.timer")

__all__ = ["MAX_SLEEP_S", "ConversationTimer", "start_sweep"]

MAX_SLEEP_S = 30.0


class ConversationTimer:
    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        fire_due: Callable[[], Awaitable[int]],
        *,
        next_due: Callable[[Database], Awaitable[datetime | None]] = conversations.next_wake,
        name: str = "sms-timer",
    ) -> None:
        self._db = db
        self._clock = clock
        self._fire_due = fire_due
        self._next_due = (
            next_due  # the reminders' sweep (radsched/sms/reminders.py) looks elsewhere
        )
        self._name = name
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._planned: datetime | None = None  # when the timer looks next

    def start(self) -> None:
        self._task = spawn(self._run(), name=self._name)

    def wake(self) -> None:
        self._wakeup.set()

    def deadline(self, at: datetime) -> None:
        """A conversation now wakes at ``at``: look early only if that is before the next look.

        Called before the caller commits; that is fine because the timer re-reads
        ``min(wake_at)`` at least every :data:`MAX_SLEEP_S`, so nothing is missed either way.
        """
        if self._planned is None or at < self._planned:
            self._wakeup.set()

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                await self._fire_due()
                delay = await self._next_delay()
            except UNREACHABLE as exc:
                log.warning("%s: database error", self._name, extra={"error": str(exc)})
                delay = MAX_SLEEP_S
            self._planned = self._clock() + timedelta(seconds=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)

    async def _next_delay(self) -> float:
        nearest = await self._next_due(self._db)
        if nearest is None:
            return MAX_SLEEP_S
        seconds: float = (nearest - self._clock()).total_seconds()
        return min(MAX_SLEEP_S, max(0.05, seconds))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def start_sweep(
    stack: AsyncExitStack,
    db: Database,
    clock: Callable[[], datetime],
    sweep: Callable[[], Awaitable[int]],
    *,
    next_due: Callable[[Database], Awaitable[datetime | None]],
    name: str,
) -> ConversationTimer:
    """A timer running ``sweep`` when ``next_due`` comes, stopped with ``stack`` (reminders, holds)."""
    timer = ConversationTimer(db, clock, sweep, next_due=next_due, name=name)
    timer.start()
    stack.push_async_callback(timer.aclose)
    return timer
