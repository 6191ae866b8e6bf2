"""The simulated RIS after the booking: reschedule and cancel in both dialects against its calendar, and
staff-side changes announced by SIU^S15 / SIU^S13 to a real MLLP listener (standing in for radsched)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

import mllp
from channels import (
    AckCode,
    Appointment,
    ChangeResult,
    Dialect,
    Location,
    OrderRef,
    Slot,
    build_ack,
    get_dialect,
    parse,
    parse_siu,
)
from radsched.simris import SimRis, default_calendar
from radsched.simris.control import control_app
from tests.channels.hl7check import assert_valid_hl7

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # Monday 07:00 in New York
ORDER = OrderRef("PLC1", "MRN00001", "PLC1", "ACC1", modality="CT")
DIALECTS = ["ch10-2.5.1", "qie-2.3"]


def _clock() -> datetime:
    return NOW


@pytest.fixture
async def sim() -> AsyncIterator[SimRis]:
    ris = SimRis(default_calendar(clock=_clock))
    await ris.start()
    yield ris
    await ris.aclose()


class Desk:
    """The daemon's side of one dialect over a real MLLP connection to the simulator."""

    def __init__(self, sim: SimRis, name: str) -> None:
        self.sim = sim
        self.hl7: Dialect = get_dialect(name, tz=NY, clock=_clock)
        self.client = mllp.Client(sim.host, sim.port)

    def open_slots(self, count: int = 3) -> list[Slot]:
        return self.sim.calendar.open_slots("DTWN", "CT", NOW, NOW + timedelta(days=1), count)

    async def book(self, slot: Slot, appointment_id: str) -> Appointment:
        out = self.hl7.build_booking(ORDER, slot, appointment_id)
        reply = await self.client.request(out.payload, timeout=5)
        result = self.hl7.parse_booking_response(reply, out.control_id)
        assert result.accepted
        location = Location("DTWN", "Downtown Imaging", "", ("CT",))
        return Appointment(
            appointment_id,
            ORDER.order_id,
            slot,
            location,
            filler_appointment_id=result.appointment_id,
        )

    async def cancel(self, appointment: Appointment) -> tuple[bytes, ChangeResult]:
        out = self.hl7.build_cancel(appointment, ORDER, reason="Patient request")
        reply = await self.client.request(out.payload, timeout=5)
        assert_valid_hl7(reply)
        return reply, self.hl7.parse_change_response(reply, out.control_id)

    async def move(self, appointment: Appointment, slot: Slot) -> ChangeResult:
        out = self.hl7.build_reschedule(appointment, ORDER, slot)
        reply = await self.client.request(out.payload, timeout=5)
        assert_valid_hl7(reply)
        return self.hl7.parse_change_response(reply, out.control_id)


@pytest.fixture(params=DIALECTS)
async def desk(request: pytest.FixtureRequest, sim: SimRis) -> AsyncIterator[Desk]:
    d = Desk(sim, str(request.param))
    yield d
    await d.client.aclose()


async def test_cancel_frees_the_slot(desk: Desk) -> None:
    slot = desk.open_slots(1)[0]
    booked = await desk.book(slot, "RSAPPT1")
    assert slot.id in desk.sim.bookings
    _, result = await desk.cancel(booked)
    assert result.accepted is True
    assert slot.id not in desk.sim.bookings
    assert slot in desk.open_slots(1)
    # Bookable again, by someone else.
    await desk.book(slot, "RSAPPT2")
    assert desk.sim.bookings[slot.id].placer_appointment_id == "RSAPPT2"


async def test_a_second_cancel_is_refused_and_changes_nothing(desk: Desk) -> None:
    slot = desk.open_slots(1)[0]
    booked = await desk.book(slot, "RSAPPT1")
    await desk.cancel(booked)
    _, again = await desk.cancel(booked)
    assert again.accepted is False
    assert again.reason == "unknown appointment"


async def test_reschedule_moves_the_booking_and_frees_the_old_slot(desk: Desk) -> None:
    first, second, _ = desk.open_slots(3)
    booked = await desk.book(first, "RSAPPT1")
    ris_id = desk.sim.bookings[first.id].appointment_id
    result = await desk.move(booked, second)
    assert result.accepted is True
    assert first.id not in desk.sim.bookings
    moved = desk.sim.bookings[second.id]
    assert (moved.appointment_id, moved.placer_appointment_id) == (ris_id, "RSAPPT1")


async def test_reschedule_to_a_taken_slot_leaves_the_appointment_standing(desk: Desk) -> None:
    first, second, _ = desk.open_slots(3)
    booked = await desk.book(first, "RSAPPT1")
    await desk.book(second, "RSAPPT2")
    result = await desk.move(booked, second)
    assert result.accepted is False
    assert "already booked" in str(result.reason)
    assert desk.sim.bookings[first.id].placer_appointment_id == "RSAPPT1"


async def test_refuse_changes_fault(desk: Desk) -> None:
    slot = desk.open_slots(1)[0]
    booked = await desk.book(slot, "RSAPPT1")
    desk.sim.set_faults(refuse_changes=True)
    reply, result = await desk.cancel(booked)
    assert result.accepted is False
    assert result.reason == "Exam already in progress"
    if desk.hl7.name == "qie-2.3":
        assert b"ORC|UC|" in reply
    assert slot.id in desk.sim.bookings


# ---- acting as staff -----------------------------------------------------------------------------------


class Listener:
    """A real MLLP listener that ACKs every message, in place of radsched's MLLP_LISTEN."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.server: mllp.Server | None = None

    async def handle(self, payload: bytes, peer: object) -> bytes:
        self.received.append(payload)
        return build_ack(parse(payload), AckCode.AA).payload


@pytest.fixture
async def listener(sim: SimRis) -> AsyncIterator[Listener]:
    ear = Listener()
    ear.server = await mllp.start_server(ear.handle, "127.0.0.1", 0)
    sim.notify = (ear.server.host, ear.server.port)
    yield ear
    await ear.server.aclose()


@asynccontextmanager
async def control(sim: SimRis) -> AsyncIterator[str]:
    """The simulated RIS's control channel on loopback; yields its base URL."""
    runner = web.AppRunner(control_app(sim), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_staff_cancel_sends_siu_s15(desk: Desk, listener: Listener) -> None:
    slot = desk.open_slots(1)[0]
    await desk.book(slot, "RSAPPT1")
    ris_id = desk.sim.bookings[slot.id].appointment_id
    result = await desk.sim.staff_cancel(ris_id, reason="Scanner down")
    assert (result["sent"], result["ack"]) == ("SIU^S15", "AA")
    [payload] = listener.received
    assert_valid_hl7(payload)
    siu = parse_siu(payload, tz=NY)
    assert (siu.trigger, siu.placer_appointment_id, siu.filler_appointment_id) == (
        "S15",
        "RSAPPT1",
        ris_id,
    )
    assert siu.filler_status.startswith("Cancelled") and siu.event_reason == "Scanner down"
    assert siu.mrn == "MRN00001" and siu.start == slot.start
    assert siu.version == ("2.5.1" if desk.hl7.name == "ch10-2.5.1" else "2.3")
    assert slot.id not in desk.sim.bookings


async def test_staff_move_over_the_control_channel_sends_siu_s13(
    desk: Desk, listener: Listener
) -> None:
    first, second, third = desk.open_slots(3)
    await desk.book(first, "RSAPPT1")
    await desk.book(third, "RSAPPT3")
    async with control(desk.sim) as base, aiohttp.ClientSession() as http:
        url = f"{base}/appointments/RSAPPT1/move"
        async with http.post(url, json={"slot_id": second.id}) as resp:
            assert resp.status == 200
            body = await resp.json()
        async with http.post(url, json={"slot_id": third.id}) as resp:
            assert resp.status == 409  # taken: the appointment stays where it is
        async with http.post(f"{base}/appointments/NOPE/cancel") as resp:
            assert resp.status == 404
    assert (body["sent"], body["ack"], body["slot_id"]) == ("SIU^S13", "AA", second.id)
    [payload] = listener.received
    assert_valid_hl7(payload)
    siu = parse_siu(payload, tz=NY)
    assert siu.trigger == "S13" and siu.start == second.start
    assert desk.sim.bookings[second.id].placer_appointment_id == "RSAPPT1"
    assert first.id not in desk.sim.bookings


async def test_staff_noshow_over_the_control_channel_sends_siu_s26(
    desk: Desk, listener: Listener
) -> None:
    slot = desk.open_slots(1)[0]
    await desk.book(slot, "RSAPPT1")
    async with (
        control(desk.sim) as base,
        aiohttp.ClientSession() as http,
        http.post(f"{base}/appointments/RSAPPT1/noshow") as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
    assert (body["sent"], body["ack"]) == ("SIU^S26", "AA")
    [payload] = listener.received
    assert_valid_hl7(payload)
    siu = parse_siu(payload, tz=NY)
    assert (siu.trigger, siu.placer_appointment_id, siu.filler_status) == (
        "S26",
        "RSAPPT1",
        "Noshow",
    )
    assert siu.start == slot.start
    assert slot.id in desk.sim.bookings  # a no-show frees nothing


async def test_staff_change_without_notify_only_changes_the_calendar(sim: SimRis) -> None:
    desk = Desk(sim, "qie-2.3")
    try:
        slot = desk.open_slots(1)[0]
        await desk.book(slot, "RSAPPT1")
        result = await sim.staff_cancel("RSAPPT1")
        assert result["ack"] is None and slot.id not in sim.bookings
        with pytest.raises(LookupError):
            await sim.staff_cancel("RSAPPT1")
    finally:
        await desk.client.aclose()


def test_ids_are_not_reused_after_a_cancel() -> None:
    calendar = default_calendar(clock=_clock)
    a, b = calendar.open_slots("DTWN", "CT", NOW, NOW + timedelta(days=1), 2)
    first = calendar.book(a.id, placer_appointment_id="P1", order_id="O1")
    assert not isinstance(first, str)
    calendar.cancel(first)
    second = calendar.book(b.id, placer_appointment_id="P2", order_id="O2")
    assert not isinstance(second, str) and second.appointment_id != first.appointment_id
    assert calendar.slot_at("DTWN", "ct", b.start) == replace(b)
