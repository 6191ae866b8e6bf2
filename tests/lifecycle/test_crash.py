"""A daemon SIGKILLed between sending a cancel and reading the RIS's answer: the restarted daemon re-sends
the pending change with the same MSH-10, the RIS (which already cancelled) answers with its original reply,
and the appointment ends cancelled once, with one S15 queued."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import asyncpg

from radsched.simris import SimRis, default_calendar
from tests.daemonproc import DaemonProcess
from tests.ris.conftest import DAY, HASH_KEY, KEYS, NOW, PHI_KEY
from tests.ris.test_crash import _insert_order
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


async def _fetch(database_url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def test_crash_between_cancel_and_answer_ends_in_one_state(
    data_dir: Path, database_url: str
) -> None:
    sim = SimRis(default_calendar(clock=lambda: NOW))
    await sim.start()
    try:
        await _insert_order(database_url, "PLC77")
        headers = {"X-API-Key": KEYS[0]}
        first = await asyncio.to_thread(_daemon(data_dir, database_url, sim).start)
        try:
            async with aiohttp.ClientSession(headers=headers) as http:
                params = {"location": "DTWN", "modality": "CT", "date": DAY}
                async with http.get(first.url("/api/ris/available-slots"), params=params) as r:
                    slot = (await r.json())["slots"][0]
                body = {
                    "order_id": "PLC77",
                    "mrn": "MRN00001",
                    "modality": "CT",
                    "location": "DTWN",
                    "slot_id": slot["id"],
                }
                async with http.post(first.url("/api/ris/book-appointment"), json=body) as r:
                    assert r.status == 201
                    appointment_id = (await r.json())["appointment"]["id"]
                sim.set_faults(stall=True)  # the RIS cancels, but its answer never leaves
                pending = asyncio.ensure_future(
                    http.post(
                        first.url("/api/ris/cancel-appointment"),
                        json={"appointment_id": appointment_id},
                    )
                )
                await sim.wait_for_frames("SRM^S04", 1)
                await asyncio.to_thread(first.kill)  # SIGKILL
                with contextlib.suppress(aiohttp.ClientError):
                    (await pending).close()
        finally:
            await asyncio.to_thread(first.kill)
        [change] = await _fetch(database_url, "SELECT state, control_id FROM appointment_changes")
        assert change["state"] == "pending"
        assert slot["id"] not in sim.bookings  # the RIS did cancel
        sim.clear_faults()

        second = await asyncio.to_thread(_daemon(data_dir, database_url, sim).start)
        try:
            await sim.wait_for_frames("SRM^S04", 2, timeout=30)
            frames = sim.frames_of("SRM^S04")
            assert frames[0] == frames[1] == change["control_id"]  # same MSH-10

            async def settled() -> bool:
                rows = await _fetch(database_url, "SELECT state FROM appointment_changes")
                return rows[0]["state"] != "pending"

            await eventually(settled, timeout=30, what="the pending cancel resolved")
            [row] = await _fetch(database_url, "SELECT status FROM appointments")
            assert row["status"] == "cancelled"
            s15 = await _fetch(
                database_url, "SELECT id FROM hl7_outbox WHERE message_type = 'SIU^S15'"
            )
            assert len(s15) == 1
            # The client's retry gets the stored outcome and sends nothing.
            async with (
                aiohttp.ClientSession(headers=headers) as http,
                http.post(
                    second.url("/api/ris/cancel-appointment"),
                    json={"appointment_id": appointment_id},
                ) as r,
            ):
                assert r.status == 200
                assert (await r.json())["status"] == "cancelled"
            assert len(sim.frames_of("SRM^S04")) == 2
        finally:
            await asyncio.to_thread(second.stop)
    finally:
        await sim.aclose()
