"""Regression tests for the bugs the chaos run found (docs/reliability.md, "Bugs found").

1. A booking resolved by the start-up pass of the RIS resolver was marked booked before the EMR
   component had registered its booking hook: booked on the RIS and here, but no SIU ever queued.
2. A conversation that ended (the patient was told to call) while its booking was still pending
   purged the order's sealed copy; the resolver then could not rebuild the booking to re-send it,
   gave up, and marked "failed" an appointment the RIS had in fact booked.
4. An unreadable answer to a booking (not HL7, or acknowledging another control id) was taken by
   the conversation as a rejection, while the booking stayed pending and the resolver later booked it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from channels import OrderRef, PatientName, Slot
from radsched.conversation.model import Book, RisDown, State
from radsched.daemon import running
from radsched.privacy import PhiBox, parse_key
from radsched.simris import SimRis, default_calendar
from radsched.sms.driver import PendingCall
from radsched.sms.ris_calls import RisCaller
from radsched.storage import bookings
from radsched.storage.db import Database
from radsched.storage.orders import OrderStore
from tests.daemonproc import DaemonProcess
from tests.emr import helpers as emr_helpers

HASH_KEY = secrets.token_hex(32)
PHI_KEY = secrets.token_hex(32)
NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _store() -> OrderStore:
    return OrderStore(parse_key(HASH_KEY), PhiBox.from_secret(PHI_KEY))


def _order(order_id: str) -> OrderRef:
    name = PatientName("TESTPATIENT", "ALPHA")
    return OrderRef(order_id, "MRN00001", order_id, "", "71045", "XR CHEST", "C4", "CR", name)


async def _pending_booking(conn: asyncpg.Connection, key: str, slot: Slot) -> uuid.UUID:
    row = await bookings.insert_pending(
        conn,
        order_key=key,
        slot=slot,
        control_id="CHAOSBUG" + secrets.token_hex(4).upper(),
        appointment_id="RS" + secrets.token_hex(7).upper(),
        source="sms",
        correlation_id="test",
        now=datetime.now(UTC) - timedelta(minutes=1),  # left by an earlier run
    )
    assert row is not None
    return row.id


async def test_ending_a_conversation_keeps_the_order_while_its_booking_is_pending(
    db: Database,
) -> None:
    store = _store()
    slot = Slot("DTWN-CR-202612011000", "DTWN", "CR", NOW + timedelta(days=1), 15)
    async with db.transaction("test") as conn:
        await store.insert(
            conn,
            _order("PLCBUG2"),
            source="mllp",
            facility=None,
            phone="+12175550111",
            correlation_id="t",
            received_at=NOW,
        )
        key = store.key("PLCBUG2")
        booking_id = await _pending_booking(conn, key, slot)
        await store.set_state(conn, key, "deferred", now=NOW, purge_phi=True)
        kept = await store.get_by_key(conn, key)
        assert kept is not None and kept.order is not None, "needed to resolve the booking"
        await bookings.mark_booked(
            conn,
            booking_id,
            ack_code="AA",
            filler_appointment_id="SIM1",
            now=NOW,
        )
        await store.set_state(conn, key, "ended", now=NOW, purge_phi=True)
        gone = await store.get_by_key(conn, key)
        assert gone is not None and gone.order is None, "purged once nothing is pending"


async def test_booking_resolved_at_start_up_queues_its_siu(
    data_dir: Path, database_url: str
) -> None:
    async with SimRis(default_calendar()) as sim:
        start = datetime.now(UTC) + timedelta(days=1)
        [slot] = sim.calendar.open_slots("DTWN", "CR", start, start + timedelta(days=7), 1)
        store = _store()
        conn = await asyncpg.connect(database_url)
        try:
            await store.insert(
                conn,
                _order("PLCBUG1"),
                source="mllp",
                facility=None,
                phone=None,
                correlation_id="t",
                received_at=NOW,
            )
            # What a SIGKILL between sending a booking and reading its reply leaves behind.
            await _pending_booking(conn, store.key("PLCBUG1"), slot)
        finally:
            await conn.close()

        daemon = DaemonProcess(
            data_dir,
            env={
                "RADSCHED_DATABASE_URL": database_url,
                "RADSCHED_PHONE_HASH_KEY": HASH_KEY,
                "RADSCHED_PHI_KEY": PHI_KEY,
                "RADSCHED_RIS_ADDR": f"127.0.0.1:{sim.port}",
            },
        )
        await asyncio.to_thread(daemon.start)
        try:
            deadline = time.monotonic() + 30
            conn = await asyncpg.connect(database_url)
            try:
                while True:
                    row = await conn.fetchrow(
                        """SELECT b.state, (SELECT count(*) FROM hl7_outbox h
                                             WHERE h.appointment_id = b.appointment_id) AS siu
                           FROM bookings b"""
                    )
                    assert row is not None
                    if row["state"] != "pending":
                        break
                    assert time.monotonic() < deadline, "pending booking not resolved"
                    await asyncio.sleep(0.05)
            finally:
                await conn.close()
            assert row["state"] == "booked" and len(sim.bookings) == 1
            assert row["siu"] >= 1, "booked without its SIU"
        finally:
            await asyncio.to_thread(daemon.stop)


async def test_unreadable_reply_to_a_booking_is_not_a_rejection(
    data_dir: Path, database_url: str
) -> None:
    """Bug 4: a booking answered with bytes that are not HL7 stays pending (the resolver re-sends
    it and the RIS books it), so the conversation must not tell the patient it was rejected."""
    async with SimRis(default_calendar()) as sim:
        settings = emr_helpers.settings(
            data_dir, database_url, ris_addr=f"127.0.0.1:{sim.port}", ris_timeout_s=5.0
        )
        async with running(settings) as daemon:
            async with daemon.db.transaction("test") as conn:
                await daemon.orders.insert(
                    conn,
                    _order("PLCBUG4"),
                    source="mllp",
                    facility=None,
                    phone=None,
                    correlation_id="t",
                    received_at=datetime.now(UTC),
                )
            # The conversation listed locations and slots first: only the booking meets the fault.
            await daemon.scheduling.locations("CR")
            start = datetime.now(UTC) + timedelta(days=1)
            [slot] = await daemon.scheduling.slots(
                "DTWN", "CR", start=start, end=start + timedelta(days=7), limit=1
            )
            call = PendingCall(
                uuid.uuid4(),
                Book(slot.id, "DTWN", "CR"),
                State.BOOKING,
                None,
                "PLCBUG4",
                "MRN00001",
                "cid-bug4",
            )
            caller = RisCaller(lambda: daemon.scheduling, clock=lambda: datetime.now(UTC))
            sim.set_faults(garbage=True)  # not processed; the answer is not HL7
            answer = await caller.answer(call)
            assert isinstance(answer, RisDown), answer
            sim.clear_faults()
            assert await daemon.scheduling.resolve_pending() == 1
            assert len(sim.bookings) == 1  # the "rejected" booking was in fact made
