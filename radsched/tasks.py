"""One way to start a background task: named, held and, when it fails, logged.

A bare ``asyncio.create_task`` has three traps (style.md, "habits of the anchors"): the loop keeps
only a weak reference, so an unheld task can be collected mid-flight; an exception in a task nobody
awaits surfaces, if at all, as "Task exception was never retrieved" at garbage collection, long
after and without context; and an unnamed task reads as ``Task-17`` in a stack dump. ``spawn`` holds
every task until it ends, names it, and logs a failure at once with its name. ruff's TID251 bans
the raw calls everywhere else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# Strong references until each task ends (the loop's own are weak).
_running: set[asyncio.Task[Any]] = set()


def spawn(work: Coroutine[Any, Any, T], *, name: str, awaited: bool = False) -> asyncio.Task[T]:
    """Start ``work`` in the background as a task called ``name``.

    ``awaited=True`` says the caller awaits the result (or hands it on to whoever does), so an
    exception is theirs to report and is not logged here; a cancellation is never logged."""
    task = asyncio.create_task(work, name=name)  # noqa: TID251 - the one allowed call
    _running.add(task)
    task.add_done_callback(_running.discard)
    if not awaited:
        task.add_done_callback(lambda done: _report(done, name))
    return task


def _report(task: asyncio.Task[Any], name: str) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("background task %s failed", name, exc_info=error)


def running() -> int:
    """How many spawned tasks have not ended (for tests and the shutdown log)."""
    return len(_running)
