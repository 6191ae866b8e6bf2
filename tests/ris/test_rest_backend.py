"""The REST scheduling backend against a real radsched gateway: the REST contract, read from the other side.

A daemon in the gateway role serves ``/api/ris/*`` over the simulated RIS on loopback; the SMS engine's
REST backend (``SCHEDULING_BACKEND=rest``) must see the same locations and slots the HL7 service sees,
book through it idempotently, and turn a taken slot into the conversation's "other times" path.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from radsched.conversation.model import (
    Book,
    BookingConfirmed,
    BookingRejected,
    FetchLocations,
    FetchSlots,
    LocationsLoaded,
    RejectReason,
    SlotsLoaded,
    State,
)
from radsched.scheduling.errors import RisFailed, SlotUnavailable, UnknownLocation, UnknownOrder
from radsched.scheduling.rest_backend import EngineEndpoint, RestEngineClient, RestScheduling
from radsched.scheduling.service import BookingInput
from radsched.simris import SimRis
from radsched.sms.driver import PendingCall, RisCommand
from radsched.sms.ris_calls import RisCaller
from tests.ris.conftest import KEYS, NOW, GatewayFactory, fixed_clock

NY = ZoneInfo("America/New_York")


def backend_for(base: str, key: str = KEYS[1]) -> RestScheduling:
    endpoint = EngineEndpoint("scheduling", base + "/api/ris", key, timeout_s=5.0)
    return RestScheduling(RestEngineClient(endpoint, tz=NY, retry_delay_s=0.0))


def booking(order_id: str, slot_id: str, location: str = "DTWN") -> BookingInput:
    return BookingInput(
        order_id=order_id,
        mrn="MRN00001",
        slot_id=slot_id,
        location_id=location,
        modality="CT",
        source="sms",
    )


async def test_same_answers_as_the_hl7_service(gateway: GatewayFactory, sim: SimRis) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}", clock=fixed_clock) as gw:
        rest = backend_for(gw.base)
        try:
            service = gw.daemon.scheduling
            assert await rest.locations("ct") == await service.locations("CT")
            window = {"start": NOW + timedelta(hours=1), "end": NOW + timedelta(days=3)}
            for limit in (None, 4):
                over_rest = await rest.slots("DTWN", "CT", limit=limit, **window)
                over_hl7 = await service.slots("DTWN", "CT", limit=limit, **window)
                assert over_rest == over_hl7 and over_rest
            assert all(window["start"] <= s.start < window["end"] for s in over_rest)
            with pytest.raises(UnknownLocation):
                await rest.slots("NOWHERE", "CT", **window)
        finally:
            await rest._client.aclose()


async def test_booking_is_idempotent_and_a_taken_slot_is_409(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}", clock=fixed_clock) as gw:
        rest = backend_for(gw.base)
        try:
            await rest.locations("CT")  # the confirmation text names the location
            await gw.add_order("PLC1")
            await gw.add_order("PLC2")
            first = await rest.book(booking("PLC1", "DTWN-CT-202611301000"))
            again = await rest.book(booking("PLC1", "DTWN-CT-202611301000"))
            assert first.appointment.confirmation_code == again.appointment.confirmation_code
            assert first.booking_id == again.booking_id and isinstance(first.booking_id, uuid.UUID)
            assert first.appointment.location.name == "Downtown Imaging"
            assert first.appointment.slot.start == NOW.replace(hour=15)  # 10:00 in New York
            assert len(sim.calendar.bookings) == 1  # one HL7 booking for the two requests

            with pytest.raises(SlotUnavailable):
                await rest.book(booking("PLC2", "DTWN-CT-202611301000"))
            with pytest.raises(UnknownOrder):
                await rest.book(booking("NOSUCH", "DTWN-CT-202611301030"))
        finally:
            await rest._client.aclose()


async def test_a_wrong_key_names_the_setting(gateway: GatewayFactory, sim: SimRis) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}", clock=fixed_clock) as gw:
        rest = backend_for(gw.base, key="not-a-key-0123456789")
        try:
            with pytest.raises(RisFailed, match="RADSCHED_SCHEDULING_API_KEY") as info:
                await rest.locations("CT")
            assert "not-a-key" not in str(info.value)
        finally:
            await rest._client.aclose()


def pending(command: RisCommand, order_id: str = "PLC1") -> PendingCall:
    return PendingCall(
        conversation_id=uuid.uuid4(),
        command=command,
        state=State.LOADING_LOCATIONS,
        busy_until=None,
        order_id=order_id,
        mrn="MRN00001",
        correlation_id="test",
    )


async def test_the_conversation_calls_give_the_same_events(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    """The SMS engine's RIS caller over REST: menus, a confirmation, and a taken slot → other times."""
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}", clock=fixed_clock) as gw:
        rest = backend_for(gw.base)
        caller = RisCaller(lambda: rest, clock=fixed_clock)  # type: ignore[arg-type, return-value]
        try:
            assert caller.reachable()
            locations = await caller.answer(pending(FetchLocations("CT")))
            assert isinstance(locations, LocationsLoaded)
            assert [loc.id for loc in locations.locations] == ["DTWN", "NRTH"]
            menu = await caller.answer(pending(FetchSlots("DTWN", "CT", None, 3)))
            assert isinstance(menu, SlotsLoaded) and menu.more_available
            later = await caller.answer(pending(FetchSlots("DTWN", "CT", menu.slots[-1].start, 3)))
            assert isinstance(later, SlotsLoaded)
            assert later.slots[0].start > menu.slots[-1].start

            await gw.add_order("PLC1")
            await gw.add_order("PLC2")
            chosen = menu.slots[0]
            confirmed = await caller.answer(pending(Book(chosen.id, "DTWN", "CT")))
            assert isinstance(confirmed, BookingConfirmed)
            assert confirmed.location_name == "Downtown Imaging"
            taken = await caller.answer(pending(Book(chosen.id, "DTWN", "CT"), order_id="PLC2"))
            assert taken == BookingRejected(RejectReason.SLOT_TAKEN)
        finally:
            await rest._client.aclose()
