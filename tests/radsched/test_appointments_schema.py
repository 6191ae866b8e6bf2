"""Migration 0008: the appointment record, its change requests and events, and the backfill from bookings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from radsched.storage.migrate import load_migrations, migrate

START = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


async def test_booked_appointments_are_backfilled(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version < 8])
        booking = uuid.uuid4()
        await conn.execute(
            "INSERT INTO orders (id, order_key, source, modality, state, phi, correlation_id) "
            "VALUES ($1, 'k1', 'mllp', 'CT', 'booked', '\\x01'::bytea, 'c1')",
            uuid.uuid4(),
        )
        await conn.execute(
            "INSERT INTO bookings (id, order_key, slot_id, location_id, modality, state, control_id,"
            " appointment_id, filler_appointment_id, start_at, duration_minutes, source,"
            " confirmation_code, correlation_id)"
            " VALUES ($1, 'k1', 'S1', 'DTWN', 'CT', 'booked', 'M1', 'APT1', 'SIM1', $2, 30, 'sms',"
            " 'K7Q2', 'c1')",
            booking,
            START,
        )
        await conn.execute(
            "INSERT INTO bookings (id, order_key, slot_id, location_id, modality, state, control_id,"
            " appointment_id, source, correlation_id)"
            " VALUES ($1, 'k1', 'S2', 'DTWN', 'CT', 'rejected', 'M2', 'APT2', 'rest', 'c2')",
            uuid.uuid4(),
        )
        for dest in ("emr-b", "emr-a"):
            await conn.execute(
                "INSERT INTO hl7_outbox (destination, control_id, message_type, correlation_id,"
                " appointment_id) VALUES ($1, $2, 'SIU^S12', 'c1', 'APT1')",
                dest,
                f"S12-{dest}",
            )
        await migrate(conn)
        rows = await conn.fetch("SELECT * FROM appointments")
        assert len(rows) == 1
        row = rows[0]
        assert (row["appointment_id"], row["filler_appointment_id"], row["status"]) == (
            "APT1",
            "SIM1",
            "booked",
        )
        assert (row["origin"], row["booking_id"], row["confirmation_code"]) == (
            "sms",
            booking,
            "K7Q2",
        )
        assert row["emr_destinations"] == ["emr-a", "emr-b"]
        assert row["phi"] is None  # still in orders.phi, sealed for that row
        assert row["phi_expires_at"] == START.replace(day=2)
    finally:
        await conn.close()


async def test_one_pending_change_per_appointment(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO appointments (appointment_id, slot_id, location_id, modality, start_at,"
            " duration_minutes, origin, phi_expires_at) VALUES ('A1', 'S1', 'DTWN', 'CT', $1, 30,"
            " 'rest', $1)",
            START,
        )
        insert = (
            "INSERT INTO appointment_changes (id, appointment_id, kind, origin, control_id,"
            " correlation_id) VALUES ($1, 'A1', $2, 'rest', $3, 'c')"
        )
        await conn.execute(insert, uuid.uuid4(), "cancel", "M1")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, uuid.uuid4(), "reschedule", "M2")
        await conn.execute("UPDATE appointment_changes SET state = 'refused'")
        await conn.execute(insert, uuid.uuid4(), "reschedule", "M3")
        # Change notifications share the EMR outbox.
        await conn.execute(
            "INSERT INTO hl7_outbox (destination, control_id, message_type, correlation_id, origin,"
            " appointment_id) VALUES ('emr', 'X1', 'SIU^S15', 'c', 'change', 'A1')"
        )
    finally:
        await conn.close()


async def test_retention_erases_appointment_phi_one_day_after_start(database_url: str) -> None:
    from radsched.retention import RetentionPolicy, purge

    conn = await asyncpg.connect(database_url)
    try:
        insert = (
            "INSERT INTO appointments (appointment_id, slot_id, location_id, modality, start_at,"
            " duration_minutes, origin, phi, phi_expires_at) VALUES ($1, 'S', 'DTWN', 'CT', $2, 30,"
            " 'rest', '\\x01'::bytea, $3)"
        )
        await conn.execute(insert, "PAST", START, START + timedelta(days=1))
        await conn.execute(insert, "SOON", START + timedelta(days=3), START + timedelta(days=4))
        removed = await purge(conn, START + timedelta(days=1, minutes=1), RetentionPolicy())
        assert removed["appointment PHI"] == 1
        rows = await conn.fetch("SELECT appointment_id, phi IS NULL AS gone FROM appointments")
        assert {r["appointment_id"]: r["gone"] for r in rows} == {"PAST": True, "SOON": False}
    finally:
        await conn.close()
