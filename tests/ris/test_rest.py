"""The REST facade through a real in-process daemon against the simulated RIS on loopback, both dialects.

Every response is checked against the daemon's own OpenAPI document (``Gateway.call``).
"""

from __future__ import annotations

import asyncio

import pytest

from radsched.simris import SimRis
from tests.channels.hl7check import assert_valid_hl7
from tests.ris.conftest import DAY, KEYS, GatewayFactory, booking_for

DIALECTS = ("ch10-2.5.1", "qie-2.3")
BOOKING_TYPE = {"ch10-2.5.1": "SRM^S01", "qie-2.3": "ORM^O01"}


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_locations_slots_and_booking(
    gateway: GatewayFactory, sim: SimRis, dialect: str
) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}", ris_dialect=dialect) as gw:
        status, body = await gw.locations("ct")
        assert status == 200
        assert [loc["id"] for loc in body["locations"]] == ["DTWN", "NRTH"]
        assert body["locations"][0] == {
            "id": "DTWN",
            "name": "Downtown Imaging",
            "address": "100 Main St, Springfield",
            "modalities": ["CR", "DX", "CT", "US"],
        }

        status, body = await gw.slots("DTWN", "CT", DAY)
        assert status == 200
        slots = body["slots"]
        assert len(slots) == 18  # 08:00 .. 16:30 every 30 minutes
        assert slots[0] == {
            "id": "DTWN-CT-202611300800",
            "location": "DTWN",
            "modality": "CT",
            "start": "2026-11-30T08:00:00-05:00",
            "duration_minutes": 30,
        }
        status, body = await gw.slots("DTWN", "CT", DAY, days="2")
        assert status == 200 and len(body["slots"]) == 36
        # CR every 15 minutes: 72 in two days, capped at the dialect's query_limit (50) unless asked.
        status, body = await gw.slots("DTWN", "CR", DAY, days="2")
        assert status == 200 and len(body["slots"]) == 50
        status, body = await gw.slots("DTWN", "CR", DAY, days="2", limit="100")
        assert status == 200 and len(body["slots"]) == 72
        status, body = await gw.slots("DTWN", "CR", DAY, limit="3")
        assert [s["start"][11:16] for s in body["slots"]] == ["08:00", "08:15", "08:30"]

        await gw.add_order("PLC1")
        status, booked = await gw.book(**booking_for("PLC1", slots[3]))
        assert status == 201, booked
        assert booked["status"] == "booked"
        assert booked["appointment"]["start"] == "2026-11-30T09:30:00-05:00"
        assert booked["appointment"]["location"] == "DTWN"
        assert sim.frames_of(BOOKING_TYPE[dialect]) and len(sim.bookings) == 1

        # The booked slot is no longer offered.
        status, body = await gw.slots("DTWN", "CT", DAY)
        assert slots[3]["id"] not in {s["id"] for s in body["slots"]}

        async with gw.daemon.db.transaction("test") as conn:
            row = await conn.fetchrow("SELECT state, confirmation_code FROM bookings")
            order_state = await conn.fetchval("SELECT state FROM orders")
        assert row["state"] == "booked" and row["confirmation_code"] == booked["confirmation_code"]
        assert order_state == "booked"

    # The messages exchanged (ours and the RIS's, one of each kind) pass hl7apy strict validation.
    kinds: dict[tuple[bytes, bool], tuple[bytes, bytes]] = {}
    for request, reply in sim.exchanges:
        # QRY^Q01 carries both location and (qie-2.3) slot queries; QRD-9 "SOP" tells them apart.
        kinds.setdefault((request.split(b"|", 9)[8], b"|SOP^" in request), (request, reply))
    assert len(kinds) == 3  # locations, slots, booking
    for request, reply in kinds.values():
        assert_valid_hl7(request)
        assert_valid_hl7(reply)


async def test_idempotent_booking_sends_one_hl7_booking(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        await gw.add_order("PLC2")
        _, body = await gw.slots()
        request = booking_for("PLC2", body["slots"][0])
        first = await gw.book(**request)
        repeats = [await gw.book(**request) for _ in range(5)]
        concurrent = await asyncio.gather(*(gw.book(**request) for _ in range(5)))
        assert first[0] == 201
        assert all(r == first for r in [*repeats, *concurrent])
        assert len(sim.frames_of("SRM^S01")) == 1
        assert len(sim.bookings) == 1


async def test_concurrent_first_bookings_send_one_hl7_booking(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        await gw.add_order("PLC3")
        _, body = await gw.slots()
        request = booking_for("PLC3", body["slots"][1])
        results = await asyncio.gather(*(gw.book(**request) for _ in range(10)))
        assert {r[0] for r in results} == {201}
        assert len({r[1]["confirmation_code"] for r in results}) == 1
        assert len(sim.frames_of("SRM^S01")) == 1


async def test_second_key_works_and_missing_or_wrong_key_is_401(
    gateway: GatewayFactory, sim: SimRis
) -> None:
    async with gateway(ris_addr=f"127.0.0.1:{sim.port}") as gw:
        assert (await gw.locations(key=KEYS[1]))[0] == 200
        for key in (None, "", "nope", KEYS[0] + "x", KEYS[0][:-1]):
            for call in (
                gw.locations(key=key),
                gw.call("GET", "/api/ris/available-slots", key=key),
                gw.call("POST", "/api/ris/book-appointment", json={}, key=key),
            ):
                status, body = await call
                assert status == 401, key
                assert body["error"]["code"] == "unauthorized"
