"""Quiet hours: the local-time window in which no conversation may *start*.

``QUIET_HOURS = "20:00-09:00"`` means no first-contact text from 20:00 up to (not including)
09:00 in ``TIMEZONE``. The window may wrap midnight. Replies inside a conversation the patient
is having are never delayed (reference/sms.md section 3.5): only the first text waits.

Everything works on aware datetimes and converts through :mod:`zoneinfo`, so the window
follows the wall clock across DST changes: on the night clocks spring forward, "09:00" is
still 09:00 local, one hour fewer after midnight. If the window's end falls in a skipped hour
(a window ending at 02:30 on the spring-forward night), the first allowed instant is the
transition itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["QuietHours", "parse_quiet_hours"]

_WINDOW = re.compile(r"\s*([0-2]?[0-9]):([0-5][0-9])\s*-\s*([0-2]?[0-9]):([0-5][0-9])\s*")
_DISABLED = frozenset({"", "off", "none", "disabled"})


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window ``[start, end)`` in local wall-clock time; ``start > end`` wraps midnight."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours: start and end are equal; use 'off' to disable")

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, moment: datetime, tz: ZoneInfo) -> bool:
        """Whether ``moment`` (aware) falls inside the window in ``tz``."""
        local = _aware(moment).astimezone(tz).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, moment: datetime, tz: ZoneInfo) -> datetime:
        """The earliest instant at or after ``moment`` outside the window, in UTC."""
        moment = _aware(moment).astimezone(UTC)
        if not self.contains(moment, tz):
            return moment
        local = moment.astimezone(tz)
        # Inside the window, it ends later today - unless the window wraps midnight and we
        # are in its evening part, when it ends tomorrow.
        end_day = local.date()
        if self.start > self.end and local.time() >= self.start:
            end_day += timedelta(days=1)
        return self._first_instant_at_end(end_day, tz)

    def _first_instant_at_end(self, day: date, tz: ZoneInfo) -> datetime:
        # fold=0 picks the first of two ambiguous instants (fall back), which is what we want.
        wall = datetime.combine(day, self.end, tzinfo=tz)
        candidate = wall.astimezone(UTC)
        if candidate.astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
            return candidate
        # The wall time does not exist (spring-forward gap). The window ended at the
        # transition, which lies between the two readings of the missing time.
        # Bisect on whole seconds: quiet at ``low``, allowed at ``high``.
        low = int(wall.replace(fold=1).astimezone(UTC).timestamp())
        high = int(candidate.timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if self.contains(datetime.fromtimestamp(middle, UTC), tz):
                low = middle
            else:
                high = middle
        return datetime.fromtimestamp(high, UTC)


def parse_quiet_hours(text: str) -> QuietHours | None:
    """Parse ``"HH:MM-HH:MM"``; ``""``/``"off"``/``"none"`` disable quiet hours (None)."""
    if text.strip().lower() in _DISABLED:
        return None
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ValueError(f"quiet hours: expected 'HH:MM-HH:MM' or 'off', got {text!r}")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    if h1 > 23 or h2 > 23:
        raise ValueError(f"quiet hours: hour out of range in {text!r}")
    return QuietHours(time(h1, m1), time(h2, m2))


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("quiet hours need an aware datetime")
    return moment
