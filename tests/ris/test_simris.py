"""The simulated RIS: answers in both dialects (valid HL7, hl7apy strict), real bookings, de-duplication
on MSH-10, calendar rules and fault switches."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import mllp
from channels import AckCode, OrderRef, PatientName, Slot, get_dialect, parse
from radsched.simris import CalendarError, Faults, SimRis, default_calendar, load_calendar
from radsched.simris.server import FaultError
from tests.channels.hl7check import assert_valid_hl7
from tests.ris.conftest import NOW, fixed_clock

NY = ZoneInfo("America/New_York")
ORDER = OrderRef(
    "PLC1",
    "MRN00001",
    "PLC1",
    "ACC1",
    "74177",
    "CT ABD",
    "C4",
    "CT",
    PatientName("TESTPATIENT", "ALPHA"),
)


@pytest.mark.parametrize("name", ["ch10-2.5.1", "qie-2.3"])
async def test_both_dialects_round_trip_with_valid_hl7(sim: SimRis, name: str) -> None:
    ours = get_dialect(name, tz=NY, clock=fixed_clock)
    client = mllp.Client(sim.host, sim.port)
    try:
        out = ours.build_location_query("CT")
        reply = await client.request(out.payload, timeout=5)
        assert_valid_hl7(reply)
        assert [loc.id for loc in ours.parse_location_response(reply, out.control_id)] == [
            "DTWN",
            "NRTH",
        ]

        start = NOW
        out = ours.build_slot_query("DTWN", "CT", start, start + timedelta(days=1), limit=5)
        reply = await client.request(out.payload, timeout=5)
        assert_valid_hl7(reply)
        slots = ours.parse_slot_response(reply, out.control_id)
        assert [s.id for s in slots] == [
            f"DTWN-CT-20261130{h}" for h in ("0800", "0830", "0900", "0930", "1000")
        ]

        out = ours.build_booking(ORDER, slots[0], "RSAPPT1")
        reply = await client.request(out.payload, timeout=5)
        assert_valid_hl7(reply)
        result = ours.parse_booking_response(reply, out.control_id)
        assert result.accepted and result.ack_code is AckCode.AA
        assert sim.bookings[slots[0].id].placer_appointment_id == "RSAPPT1"

        # The same slot again, under a new control id: AE, still valid HL7.
        out = ours.build_booking(ORDER, slots[0], "RSAPPT2")
        reply = await client.request(out.payload, timeout=5)
        assert_valid_hl7(reply)
        result = ours.parse_booking_response(reply, out.control_id)
        assert not result.accepted and result.ack_code is AckCode.AE
        assert "already booked" in result.reason
    finally:
        await client.aclose()


async def test_duplicate_control_id_gets_the_original_reply_and_books_once(sim: SimRis) -> None:
    ours = get_dialect("ch10-2.5.1", tz=NY, clock=fixed_clock)
    slot = sim.calendar.open_slots("DTWN", "CT", NOW, NOW + timedelta(days=1), 1)[0]
    out = ours.build_booking(ORDER, slot, "RSAPPT1")
    client = mllp.Client(sim.host, sim.port)
    try:
        replies = [await client.request(out.payload, timeout=5) for _ in range(3)]
    finally:
        await client.aclose()
    assert replies[0] == replies[1] == replies[2]
    assert len(sim.bookings) == 1 and sim.duplicates == 2
    assert sim.frames_of("SRM^S01") == [out.control_id] * 3


async def test_unsupported_and_unknown_requests(sim: SimRis) -> None:
    client = mllp.Client(sim.host, sim.port)
    try:
        reply = await client.request(
            b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.3\rPID|1\r", timeout=5
        )
        assert parse(reply).first("MSA").get(1) == "AR"  # type: ignore[union-attr]
        assert_valid_hl7(reply)
        reply = await client.request(b"NOT HL7", timeout=5)
        assert b"MSA|AR|" in reply or b"MSA|AE|" in reply
    finally:
        await client.aclose()


async def test_dialect_restriction_answers_ar() -> None:
    sim = SimRis(default_calendar(clock=fixed_clock), dialects=("qie-2.3",))
    async with sim:
        ours = get_dialect("ch10-2.5.1", tz=NY, clock=fixed_clock)
        out = ours.build_slot_query("DTWN", "CT", NOW, NOW + timedelta(days=1))
        client = mllp.Client(sim.host, sim.port)
        try:
            reply = await client.request(out.payload, timeout=5)
        finally:
            await client.aclose()
        assert parse(reply).first("MSA").get(1) == "AR"  # type: ignore[union-attr]


def test_calendar_offers_weekdays_from_now_within_the_horizon() -> None:
    cal = default_calendar(clock=fixed_clock, horizon_days=14)
    # Saturday and Sunday: nothing.
    sat = NOW + timedelta(days=5)
    assert cal.open_slots("DTWN", "CR", sat, sat + timedelta(days=2)) == []
    # The past is never offered.
    assert cal.open_slots("DTWN", "CR", NOW - timedelta(days=3), NOW) == []
    # Beyond the horizon: nothing.
    far = NOW + timedelta(days=30)
    assert cal.open_slots("DTWN", "CR", far, far + timedelta(days=1)) == []
    day = cal.open_slots("DTWN", "CR", NOW, NOW + timedelta(hours=12))
    assert len(day) == 36 and day[0].start.hour == 8 and day[-1].start.strftime("%H:%M") == "16:45"
    assert cal.find(day[0].id) == day[0]
    assert cal.find("DTWN-CR-202611300805") is None  # not on the template's grid
    assert cal.find("garbage") is None
    assert isinstance(cal.book(day[0].id, placer_appointment_id="A", order_id="O"), object)
    assert cal.book(day[0].id, placer_appointment_id="B", order_id="O") == "slot already booked"
    assert (
        cal.book("DTWN-CR-202601050800", placer_appointment_id="B", order_id="O")
        == "unknown or past slot"
    )


def test_toml_calendar(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_text(
        'timezone = "America/Chicago"\nhorizon_days = 7\n'
        '[[locations]]\nid = "MAIN"\nname = "Main"\naddress = "1 A St"\n'
        '[[templates]]\nlocation = "MAIN"\nmodality = "mr"\ndays = ["sat"]\n'
        'start = "09:00"\nend = "11:00"\nevery_minutes = 60\nduration_minutes = 45\n'
    )
    cal = load_calendar(path, clock=fixed_clock)
    assert [(loc.id, loc.modalities) for loc in cal.locations] == [("MAIN", ("MR",))]
    slots = cal.open_slots("MAIN", "MR", NOW, NOW + timedelta(days=7))
    assert [s.start.strftime("%a %H:%M") for s in slots] == ["Sat 09:00", "Sat 10:00"]
    assert all(isinstance(s, Slot) and s.duration_minutes == 45 for s in slots)

    path.write_text('[[locations]]\nid = "A"\n[[templates]]\nlocation = "B"\nmodality = "CT"\n')
    with pytest.raises(CalendarError, match="unknown location"):
        load_calendar(path)


def test_fault_updates_are_validated() -> None:
    faults = Faults()
    faults.update({"delay": 1.5, "nak": "ae", "stall": True})
    assert faults.as_dict()["nak"] == "AE" and faults.delay == 1.5
    for bad in ({"delay": -1}, {"nak": "XX"}, {"stall": "yes"}, {"explode": True}):
        with pytest.raises(FaultError):
            faults.update(bad)
    assert faults.delay == 1.5  # a bad update changes nothing


@pytest.mark.parametrize("name", ["ch10-2.5.1", "qie-2.3"])
async def test_repeated_slot_query_answer_is_reused_until_a_booking(sim: SimRis, name: str) -> None:
    ours = get_dialect(name, tz=NY, clock=fixed_clock)
    client = mllp.Client(sim.host, sim.port)
    try:
        answers = []
        for _ in range(2):
            out = ours.build_slot_query("DTWN", "CT", NOW, NOW + timedelta(days=1))
            reply = await client.request(out.payload, timeout=5)
            assert_valid_hl7(reply)
            answers.append(
                (parse(reply).control_id, ours.parse_slot_response(reply, out.control_id))
            )
        assert answers[0][1] == answers[1][1] and answers[0][0] != answers[1][0]
        booked = sim.calendar.book(answers[0][1][0].id, placer_appointment_id="X", order_id="Y")
        assert not isinstance(booked, str)
        out = ours.build_slot_query("DTWN", "CT", NOW, NOW + timedelta(days=1))
        reply = await client.request(out.payload, timeout=5)
        assert ours.parse_slot_response(reply, out.control_id) == answers[0][1][1:]
    finally:
        await client.aclose()
