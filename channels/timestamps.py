"""HL7 TS / DT values.

We always *write* full seconds with a UTC offset (``YYYYMMDDHHMMSS+ZZZZ``): an offset is legal in every
version and removes any doubt about daylight-saving transitions. A destination that cannot take offsets gets
``with_offset=False`` (local wall time in the dialect's time zone), a per-dialect setting.

We *read* every precision the standard allows (``YYYY`` up to ``YYYYMMDDHHMMSS.SSSS``), with or without an
offset, plus the 2.3 "degree of precision" second component (``20250115^M``), which is ignored. A value
without an offset is wall time in the site time zone passed by the caller.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache

from .errors import ParseError

_TS = re.compile(
    r"(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<f>\d{1,4}))?(?P<z>[+-]\d{4})?"
)


_TS_MAX = 24


def format_ts(moment: datetime, tz: tzinfo = UTC, *, with_offset: bool = True) -> str:
    """Format an aware datetime as TS in ``tz`` (seconds precision)."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    if moment.microsecond:
        moment = moment.replace(microsecond=0)  # dropped anyway; "now" then hits within its second
    return _format_ts(moment, moment.fold, tz, with_offset)


# A message carries the same few instants again and again (a slot query's window, the header's
# "now" within one second), and zone conversion is most of the cost: the text is a pure function of
# (instant, zone, with_offset), so it is cached. Aware datetimes hash and compare as instants, so
# one instant given in two zones is one entry, which is right: the text depends on ``tz`` alone.
# Except in a fold: two datetimes of the same zone compare (and hash) equal on their wall time,
# fold ignored, though 01:30 fold=0 and fold=1 are an hour apart; ``fold`` in the key parts them.
@lru_cache(maxsize=4096)
def _format_ts(moment: datetime, fold: int, tz: tzinfo, with_offset: bool) -> str:
    local = moment.astimezone(tz)
    year = local.year
    if year >= 1000:
        text = (
            f"{year}{local.month:02d}{local.day:02d}"
            f"{local.hour:02d}{local.minute:02d}{local.second:02d}"
        )
    else:
        text = local.strftime("%Y%m%d%H%M%S")  # how strftime pads a short year is the platform's
    if with_offset:
        offset = local.utcoffset() or timedelta(0)
        minutes = int(offset.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        minutes = abs(minutes)
        text += f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    return text


def format_date(day: date) -> str:
    return day.strftime("%Y%m%d")


def parse_ts(text: str, tz: tzinfo = UTC, *, field: str = "") -> datetime:
    """Parse a TS (first component only) into an aware datetime; raises :class:`ParseError`."""
    value = text.strip()
    # The longest valid TS is YYYYMMDDHHMMSS.SSSS+ZZZZ (24 characters); longer text is not cached.
    parsed = _parse_ts(value, tz) if len(value) <= _TS_MAX else "HL7 TS"
    if isinstance(parsed, str):
        raise ParseError(
            f"{field or 'timestamp'} is not a valid {parsed}", hl7_error_code="102", location=field
        )
    return parsed


# A slot answer carries dozens of timestamps, and the same ones again on the next query for that
# day: parsing is a pure function of (text, zone) into an immutable datetime, so it is cached.
@lru_cache(maxsize=4096)
def _parse_ts(value: str, tz: tzinfo) -> datetime | str:
    """The datetime, or what ``value`` fails to be (``"HL7 TS"``, ``"date/time"``)."""
    m = _TS.fullmatch(value)
    if m is None:
        return "HL7 TS"
    try:
        frac = m["f"] or ""
        micro = int((frac + "000000")[:6]) if frac else 0
        naive = datetime(
            int(m["y"]),
            int(m["mo"] or 1),
            int(m["d"] or 1),
            int(m["h"] or 0),
            int(m["mi"] or 0),
            int(m["s"] or 0),
            micro,
        )
        if m["z"]:
            sign = -1 if m["z"][0] == "-" else 1
            hours, minutes = int(m["z"][1:3]), int(m["z"][3:5])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            offset = timezone(sign * timedelta(hours=hours, minutes=minutes))
            return naive.replace(tzinfo=offset)
    except ValueError:
        return "date/time"
    return _localize(naive, tz)


def _localize(naive: datetime, tz: tzinfo) -> datetime:
    # zoneinfo resolves ambiguous/non-existent wall times via fold=0, which is the documented choice here.
    return naive.replace(tzinfo=tz)


def parse_date(text: str, *, field: str = "") -> date:
    """Parse a DT (or the date part of a TS) such as a date of birth."""
    value = text.strip()
    m = _TS.fullmatch(value)
    if m is None or not m["d"]:
        raise ParseError(
            f"{field or 'date'} is not a valid HL7 date", hl7_error_code="102", location=field
        )
    try:
        return date(int(m["y"]), int(m["mo"]), int(m["d"]))
    except ValueError:
        raise ParseError(
            f"{field or 'date'} is not a valid date", hl7_error_code="102", location=field
        ) from None
