"""Injectable sources of time and MSH-10 control ids, so builders are deterministic under test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current, timezone-aware time."""

ControlIdSource = Callable[[], str]
"""Returns a new MSH-10 value on every call."""


def system_clock() -> datetime:
    return datetime.now(UTC)


def random_control_ids() -> str:
    """A new 20-character control id.

    MSH-10 is ST(20) in v2.3, so 20 upper-case hex digits (80 random bits from ``os.urandom``) — unique
    across restarts and across several daemons sharing one database, with no coordination. Receivers
    de-duplicate on (MSH-3, MSH-4, MSH-10).

    Every ACK takes one (issue 16), so the random bytes are read 256 ids at a time: one system call
    instead of one per id. ``list.pop`` hands each id out once even across threads, and a forked child
    drops the parent's unused ids so the two never repeat each other.
    """
    try:
        return _unused_ids.pop()
    except IndexError:
        hexed = os.urandom(10 * _ID_BATCH).hex().upper()
        fresh = [hexed[i : i + 20] for i in range(0, len(hexed), 20)]
        cid = fresh.pop()
        _unused_ids.extend(fresh)
        return cid


_ID_BATCH = 256
_unused_ids: list[str] = []
os.register_at_fork(after_in_child=_unused_ids.clear)


def sequential_control_ids(prefix: str = "T", start: int = 1, width: int = 6) -> ControlIdSource:
    """Deterministic ids (``T000001``, ``T000002``, ...) for tests and fixtures."""
    counter = itertools.count(start)

    def next_id() -> str:
        return f"{prefix}{next(counter):0{width}d}"

    return next_id


def fixed_clock(moment: datetime) -> Clock:
    """A clock that always returns ``moment`` (which must be aware)."""
    if moment.tzinfo is None:
        raise ValueError("fixed_clock needs an aware datetime")
    return lambda: moment
