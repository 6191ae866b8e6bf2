"""The available-slots answer, built as text, is byte for byte what json.dumps of the slot dicts writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from channels import Slot
from radsched.rest.scheduling import SlotsBody, slot_json

ZONES = st.sampled_from(
    [
        UTC,
        ZoneInfo("America/New_York"),
        ZoneInfo("Australia/Lord_Howe"),
        timezone(timedelta(hours=-5)),
    ]
)
TEXT = st.text(max_size=12)  # quotes, backslashes, controls, non-ASCII and lone surrogates included
SLOTS = st.builds(
    Slot,
    id=TEXT,
    location_id=TEXT,
    modality=TEXT,
    start=st.datetimes(
        min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30), timezones=ZONES
    ),
    duration_minutes=st.integers(min_value=-(10**12), max_value=10**12),
)


@settings(max_examples=300, deadline=None)
@given(ZONES, st.lists(SLOTS, max_size=6))
def test_slots_body_equals_json_dumps_of_slot_json(tz: tzinfo, slots: list[Slot]) -> None:
    body = SlotsBody(tz)
    expected = json.dumps({"slots": [slot_json(s, tz) for s in slots]})
    assert body(slots) == expected
    assert body(slots) == expected  # again, with the start times now remembered
    assert json.loads(body(slots))["slots"] == [slot_json(s, tz) for s in slots]


def test_the_same_instant_in_another_offset_is_written_in_the_site_zone() -> None:
    tz = ZoneInfo("America/New_York")
    body = SlotsBody(tz)
    utc = Slot("A", "L", "CR", datetime(2026, 12, 8, 13, 0, tzinfo=UTC), 15)
    offset = Slot(
        "B", "L", "CR", datetime(2026, 12, 8, 8, 0, tzinfo=timezone(timedelta(hours=-5))), 15
    )
    starts = [row["start"] for row in json.loads(body([utc, offset]))["slots"]]
    assert starts == ["2026-12-08T08:00:00-05:00", "2026-12-08T08:00:00-05:00"]


def test_a_row_is_kept_by_its_slot_and_never_given_to_another() -> None:
    tz = ZoneInfo("America/New_York")
    body = SlotsBody(tz)
    body.MAX_ROWS = 3  # full after three slots: kept rows are dropped, never mixed up
    start = datetime(2026, 12, 8, 13, 0, tzinfo=UTC)
    for n in range(10):
        # A fresh slot each round, the last one unreferenced: without the held slot, CPython would
        # often hand the new one the old one's id, and with it the old row.
        slots = [Slot(f"S{n}", "L", "CR", start + timedelta(minutes=n), 15 + n)]
        expected = json.dumps({"slots": [slot_json(s, tz) for s in slots]})
        assert body(slots) == body(slots) == expected
    assert len(body._rows) <= 3
