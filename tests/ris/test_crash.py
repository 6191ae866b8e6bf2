"""A daemon killed between sending a booking and reading the reply: the restarted daemon resolves the
pending booking by re-sending the same control id, and the RIS books the slot only once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import asyncpg

from channels import OrderRef, PatientName
from radsched.privacy import PhiBox, parse_key
from radsched.simris import SimRis
from radsched.storage.orders import OrderStore
from tests.daemonproc import DaemonProcess
from tests.ris.conftest import DAY, HASH_KEY, KEYS, NOW, PHI_KEY
from tests.ris.openapi_check import OpenApiChecker
from tests.waiting import eventually


def _daemon(data_dir: Path, database_url: str, sim: SimRis) -> DaemonProcess:
    return DaemonProcess(
        data_dir,
        env={
            "RADSCHED_DATABASE_URL": database_url,
            "RADSCHED_PHONE_HASH_KEY": HASH_KEY,
            "RADSCHED_PHI_KEY": PHI_KEY,
            "RADSCHED_API_KEYS": ",".join(KEYS),
            "RADSCHED_RIS_ADDR": f"127.0.0.1:{sim.port}",
            "RADSCHED_RIS_TIMEOUT_S": "30",
        },
    )


async def _insert_order(database_url: str, order_id: str) -> None:
    store = OrderStore(parse_key(HASH_KEY), PhiBox.from_secret(PHI_KEY))
    conn = await asyncpg.connect(database_url)
    try:
        ref = OrderRef(
            order_id,
            "MRN00001",
            order_id,
            "",
            "74177",
            "CT ABD",
            "C4",
            "CT",
            PatientName("TESTPATIENT", "ALPHA"),
        )
        await store.insert(
            conn,
            ref,
            source="api",
            facility="DTWN",
            phone=None,
            correlation_id="test",
            received_at=NOW,
        )
    finally:
        await conn.close()


async def _booking_state(database_url: str) -> tuple[str, str | None]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT state, confirmation_code FROM bookings")
    finally:
        await conn.close()
    assert row is not None
    return row["state"], row["confirmation_code"]


async def test_crash_between_send_and_reply_is_resolved_on_restart_without_double_booking(
    sim: SimRis, data_dir: Path, database_url: str
) -> None:
    await _insert_order(database_url, "PLC9")
    headers = {"X-API-Key": KEYS[0]}
    first = await asyncio.to_thread(_daemon(data_dir, database_url, sim).start)
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(first.url("/api/openapi.json")) as r:
                checker = OpenApiChecker(await r.json())
            params = {"location": "DTWN", "modality": "CT", "date": DAY}
            async with http.get(first.url("/api/ris/available-slots"), params=params) as r:
                listed = await r.json()
                checker.check("GET", "/api/ris/available-slots", r.status, r.content_type, listed)
                slot = listed["slots"][0]
            request = {
                "order_id": "PLC9",
                "mrn": "MRN00001",
                "modality": "CT",
                "location": "DTWN",
                "slot_id": slot["id"],
            }
            sim.set_faults(stall=True)  # the RIS books, but its answer never leaves
            pending = asyncio.ensure_future(
                http.post(first.url("/api/ris/book-appointment"), json=request)
            )
            await sim.wait_for_frames("SRM^S01", 1)
            await asyncio.to_thread(first.kill)  # SIGKILL: no shutdown, no chance to finish
            with contextlib.suppress(aiohttp.ClientError):
                (await pending).close()
    finally:
        await asyncio.to_thread(first.kill)
    assert (await _booking_state(database_url))[0] == "pending"
    assert len(sim.bookings) == 1
    sim.clear_faults()

    second = await asyncio.to_thread(_daemon(data_dir, database_url, sim).start)
    try:
        # On start-up the daemon re-sends the pending booking with the same control id.
        await sim.wait_for_frames("SRM^S01", 2, timeout=30)

        async def resolved() -> bool:
            return (await _booking_state(database_url))[0] != "pending"

        await eventually(resolved, timeout=30, what="the pending booking resolved")
        state = await _booking_state(database_url)
        assert state[0] == "booked" and state[1]
        frames = sim.frames_of("SRM^S01")
        assert frames[0] == frames[1]
        assert sim.duplicates == 1 and len(sim.bookings) == 1

        # The client's retry gets the stored outcome: same confirmation, no further HL7 booking.
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.post(second.url("/api/ris/book-appointment"), json=request) as r,
        ):
            booked = await r.json()
            checker.check("POST", "/api/ris/book-appointment", r.status, r.content_type, booked)
            assert r.status == 201
            assert booked["confirmation_code"] == state[1]
        assert len(sim.frames_of("SRM^S01")) == 2
    finally:
        await asyncio.to_thread(second.stop)
