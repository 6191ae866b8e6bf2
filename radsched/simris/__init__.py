"""A simulated RIS for tests, rehearsals and ``make run``: :class:`SimRis` with a :class:`Calendar`."""

from radsched.simris.calendar import Calendar, CalendarError, default_calendar, load_calendar
from radsched.simris.server import DIALECT_NAMES, Faults, SimRis

__all__ = [
    "DIALECT_NAMES",
    "Calendar",
    "CalendarError",
    "Faults",
    "SimRis",
    "default_calendar",
    "load_calendar",
]
