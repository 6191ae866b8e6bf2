"""Quiet hours: parsing, wrap-around windows and DST-correct next allowed times."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radsched.conversation.quiet_hours import QuietHours, parse_quiet_hours

NY = ZoneInfo("America/New_York")
DEFAULT = QuietHours(time(20, 0), time(9, 0))


def ny(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY)


def test_parse() -> None:
    assert parse_quiet_hours("20:00-09:00") == DEFAULT
    assert parse_quiet_hours(" 8:30 - 17:45 ") == QuietHours(time(8, 30), time(17, 45))
    for off in ("", "off", "None", "disabled"):
        assert parse_quiet_hours(off) is None
    for bad in ("20-09", "25:00-09:00", "20:00-09:60", "09:00-09:00", "nightly"):
        with pytest.raises(ValueError, match="quiet hours"):
            parse_quiet_hours(bad)
    assert str(DEFAULT) == "20:00-09:00"


@pytest.mark.parametrize(
    ("moment", "quiet"),
    [
        (ny(2026, 6, 1, 19, 59), False),
        (ny(2026, 6, 1, 20, 0), True),
        (ny(2026, 6, 1, 23, 59), True),
        (ny(2026, 6, 2, 0, 0), True),
        (ny(2026, 6, 2, 8, 59), True),
        (ny(2026, 6, 2, 9, 0), False),
    ],
)
def test_wrapping_window(moment: datetime, quiet: bool) -> None:
    assert DEFAULT.contains(moment, NY) is quiet


def test_daytime_window() -> None:
    lunch = QuietHours(time(12, 0), time(13, 0))
    assert lunch.contains(ny(2026, 6, 1, 12, 30), NY)
    assert not lunch.contains(ny(2026, 6, 1, 13, 0), NY)
    assert lunch.next_allowed(ny(2026, 6, 1, 12, 30), NY) == ny(2026, 6, 1, 13, 0)


@pytest.mark.parametrize(
    ("moment", "allowed"),
    [
        (ny(2026, 6, 1, 21, 0), ny(2026, 6, 2, 9, 0)),  # evening -> tomorrow
        (ny(2026, 6, 2, 3, 0), ny(2026, 6, 2, 9, 0)),  # small hours -> today
        (ny(2026, 6, 2, 10, 0), ny(2026, 6, 2, 10, 0)),  # allowed already
        # Spring forward on 8 Mar 2026: the night is an hour shorter, 09:00 is EDT.
        (ny(2026, 3, 7, 22, 0), datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
        # Fall back on 1 Nov 2026: the night is an hour longer, 09:00 is EST.
        (ny(2026, 10, 31, 22, 0), datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
        # During the repeated hour (01:30 happens twice) the answer is still 09:00 EST.
        (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
    ],
)
def test_next_allowed(moment: datetime, allowed: datetime) -> None:
    assert DEFAULT.next_allowed(moment, NY) == allowed
    assert DEFAULT.next_allowed(moment, NY).tzinfo is UTC


def test_window_ending_inside_the_skipped_hour() -> None:
    # 02:30 does not exist on 8 Mar 2026 in New York; the window ends when clocks jump to 03:00.
    window = QuietHours(time(22, 0), time(2, 30))
    allowed = window.next_allowed(ny(2026, 3, 7, 23, 0), NY)
    assert allowed == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert allowed.astimezone(NY).hour == 3
    assert window.contains(allowed - timedelta(seconds=1), NY)


def test_window_ending_inside_the_repeated_hour_ends_at_its_first_occurrence() -> None:
    window = QuietHours(time(22, 0), time(1, 30))
    allowed = window.next_allowed(ny(2026, 10, 31, 23, 0), NY)
    assert allowed == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        DEFAULT.contains(datetime(2026, 6, 1, 12, 0), NY)


ZONES = st.sampled_from(
    [NY, ZoneInfo("America/Los_Angeles"), ZoneInfo("Europe/London"), ZoneInfo("Australia/Sydney")]
)
TIMES = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@given(
    TIMES,
    TIMES,
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
    ZONES,
)
def test_next_allowed_is_the_first_allowed_instant(
    start: time, end: time, moment: datetime, tz: ZoneInfo
) -> None:
    if start == end:
        return
    window = QuietHours(start, end)
    allowed = window.next_allowed(moment, tz)
    assert allowed >= moment
    assert not window.contains(allowed, tz)
    assert allowed - moment <= timedelta(hours=25)
    if allowed > moment:
        assert window.contains(allowed - timedelta(seconds=1), tz)
