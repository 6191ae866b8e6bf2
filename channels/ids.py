"""Injectable sources of time and MSH-10 control ids, so builders are deterministic under test."""

from __future__ import annotations

import itertools
import uuid
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

    MSH-10 is ST(20) in v2.3, so 20 hex digits of a UUID4 (80 random bits) — unique across restarts and across
    several daemons sharing one database, with no coordination. Receivers de-duplicate on (MSH-3, MSH-4, MSH-10).
    """
    return uuid.uuid4().hex[:20].upper()


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
