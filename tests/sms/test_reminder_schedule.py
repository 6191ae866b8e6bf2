"""When reminders go out (radsched.conversation.reminders): examples, then the rules as properties."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radsched.conversation.reminders import (
    EXTRA_WHEN_LEAD,
    Offset,
    ReminderWindow,
    parse_reminder_window,
    parse_reminders,
    plan_reminders,
    send_time,
)

NY = ZoneInfo("America/New_York")
DAY = ReminderWindow(time(9, 0), time(18, 0))
DEFAULT = parse_reminders("3d,1d")


def ny(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=NY)


def plan(start: datetime, booked: datetime, **kw: object) -> list[tuple[str, datetime]]:
    offsets = kw.get("offsets", DEFAULT)
    window = kw.get("window", DAY)
    due = plan_reminders(start, booked, offsets, window, NY)  # type: ignore[arg-type]
    return [(d.kind, d.at.astimezone(NY)) for d in due]


def test_parse_settings() -> None:
    assert parse_reminders("3d,1d") == (Offset(3, "d"), Offset(1, "d"))
    assert parse_reminders(" 2m ") == (Offset(2, "m"),)
    assert parse_reminders("1d, 36h,1d") == (Offset(36, "h"), Offset(1, "d"))
    assert parse_reminders("off") == ()
    for bad in ("3", "0d", "3w", "-1d", "3d;1d", "61d", "1m,2m,3m,4m,5m,6m,7m"):
        with pytest.raises(ValueError):
            parse_reminders(bad)
    assert parse_reminder_window("09:00-18:00") == DAY
    assert parse_reminder_window("off") is None
    for bad in ("18:00-09:00", "9-18", "09:00-09:00", "24:00-25:00"):
        with pytest.raises(ValueError):
            parse_reminder_window(bad)


def test_default_three_and_one_day_at_the_appointment_time() -> None:
    # Booked Mon 1 Jun for Tue 9 Jun 9:30: lead 8 days, so no 7-day reminder.
    assert plan(ny(6, 9, 9, 30), ny(6, 1, 11)) == [
        ("3d", ny(6, 6, 9, 30)),
        ("1d", ny(6, 8, 9, 30)),
    ]


def test_seven_day_reminder_only_with_ten_days_lead() -> None:
    start = ny(6, 20, 10)
    assert [k for k, _ in plan(start, start - timedelta(days=10))] == ["7d", "3d", "1d"]
    assert [k for k, _ in plan(start, start - timedelta(days=10) + timedelta(minutes=1))] == [
        "3d",
        "1d",
    ]


def test_outside_the_window_moves_to_the_nearest_earlier_opening() -> None:
    # 1d before Tue 8:00 is Mon 8:00, before the window opens: Sun 9:00.
    assert plan(ny(6, 9, 8), ny(6, 1, 11), offsets=parse_reminders("1d")) == [("1d", ny(6, 7, 9))]
    # 1d before Tue 19:30 is Mon 19:30, after it closes: Mon 9:00.
    assert plan(ny(6, 9, 19, 30), ny(6, 1, 11), offsets=parse_reminders("1d")) == [
        ("1d", ny(6, 8, 9))
    ]
    # Window off: any time.
    assert plan(ny(6, 9, 19, 30), ny(6, 1, 11), offsets=parse_reminders("1d"), window=None) == [
        ("1d", ny(6, 8, 19, 30))
    ]


def test_a_reminder_already_past_at_booking_is_skipped() -> None:
    # Booked Sat for Mon: the 3-day reminder was due Fri.
    assert plan(ny(6, 8, 10), ny(6, 6, 12)) == [("1d", ny(6, 7, 10))]
    # Moved earlier than the booking by the window: skipped too, not sent late.
    assert plan(ny(6, 9, 19), ny(6, 8, 12), offsets=parse_reminders("1d")) == []


def test_short_offsets_for_a_demo() -> None:
    booked = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
    start = booked + timedelta(hours=2)
    due = plan_reminders(start, booked, parse_reminders("2m"), None, NY)
    assert [(d.kind, d.at) for d in due] == [("2m", start - timedelta(minutes=2))]


def test_days_follow_the_wall_clock_across_dst() -> None:
    # US DST starts Sun 8 Mar 2026: 1d before Mon 9 Mar 9:30 EDT is Sun 9:30 EDT (23 hours earlier).
    assert plan(ny(3, 9, 9, 30), ny(3, 1, 11), offsets=parse_reminders("1d")) == [
        ("1d", ny(3, 8, 9, 30))
    ]


def test_two_reminders_on_one_instant_are_sent_once() -> None:
    assert plan(ny(6, 9, 10), ny(6, 1, 11), offsets=parse_reminders("1d,24h")) == [
        ("1d", ny(6, 8, 10))
    ]


def test_send_time_for_a_reminder_found_late() -> None:
    start = ny(6, 9, 10)
    assert send_time(ny(6, 8, 12), start, DAY, NY) == ny(6, 8, 12)
    assert send_time(ny(6, 8, 20), start, DAY, NY) == ny(6, 9, 9)
    assert send_time(ny(6, 8, 20), ny(6, 9, 8), DAY, NY) is None  # next opening after the start
    assert send_time(ny(6, 9, 11), start, DAY, NY) is None  # after the start
    assert send_time(ny(6, 8, 23), start, None, NY) == ny(6, 8, 23)


# ---- properties -------------------------------------------------------------------------------------

ZONES = st.sampled_from(
    [ZoneInfo(z) for z in ("America/New_York", "Europe/London", "Australia/Lord_Howe", "UTC")]
)
MOMENTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
OFFSETS = st.lists(
    st.builds(Offset, st.integers(1, 90), st.sampled_from(["m", "h", "d"])).filter(
        lambda o: o.approx <= timedelta(days=60)
    ),
    min_size=1,
    max_size=6,
    unique=True,
).map(tuple)
WINDOWS = st.one_of(
    st.none(),
    st.tuples(st.integers(0, 22), st.integers(0, 59), st.integers(1, 23))
    .filter(lambda t: t[0] < t[2])
    .map(lambda t: ReminderWindow(time(t[0], t[1]), time(t[2], 0))),
)


@settings(max_examples=400, deadline=None)
@given(
    MOMENTS,
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=90)),
    OFFSETS,
    WINDOWS,
    ZONES,
)
def test_every_plan_keeps_every_rule(
    booked: datetime,
    lead: timedelta,
    offsets: tuple[Offset, ...],
    window: ReminderWindow | None,
    tz: ZoneInfo,
) -> None:
    start = booked + lead
    due = plan_reminders(start, booked, offsets, window, tz)
    times = [d.at for d in due]
    assert times == sorted(set(times)), "earliest first, never two at one instant"
    kinds = {o.label for o in offsets}
    for d in due:
        assert booked < d.at < start, "after the booking, before the start"
        assert d.at.tzinfo is UTC
        if window is not None:
            assert window.contains(d.at, tz), "inside the window"
        assert d.kind in kinds or (d.kind == "7d" and lead >= EXTRA_WHEN_LEAD)
        offset = Offset(int(d.kind[:-1]), d.kind[-1])  # type: ignore[arg-type]
        nominal = offset.before(start, tz)
        # Never later than asked; when moved, to the most recent opening (no opening in between).
        assert d.at <= nominal
        if d.at != nominal:
            assert window is not None and not window.contains(nominal, tz)
            assert d.at == window.opening_at_or_before(nominal, tz)
    if lead >= EXTRA_WHEN_LEAD and "7d" not in {d.kind for d in due}:
        # the 7-day reminder is planned, unless its time passed or another one took its instant
        seven = Offset(7, "d").before(start, tz)
        moved = (
            window.opening_at_or_before(seven, tz)
            if window and not window.contains(seven, tz)
            else seven
        )
        assert moved <= booked or moved in times


@given(MOMENTS, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=9)), ZONES)
def test_no_seven_day_reminder_below_ten_days_lead(
    booked: datetime, lead: timedelta, tz: ZoneInfo
) -> None:
    due = plan_reminders(booked + lead, booked, parse_reminders("3d,1d"), DAY, tz)
    assert "7d" not in {d.kind for d in due}


@given(MOMENTS, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5)), WINDOWS, ZONES)
def test_a_late_reminder_is_sent_inside_the_window_before_the_start_or_not_at_all(
    now: datetime, ahead: timedelta, window: ReminderWindow | None, tz: ZoneInfo
) -> None:
    start = now + ahead
    at = send_time(now, start, window, tz)
    if at is not None:
        assert now <= at < start
        assert window is None or window.contains(at, tz)
