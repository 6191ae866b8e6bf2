"""Retention removes exactly what the policy says, at the injected time, once a day across daemons."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from radsched.retention import LOCK_KEY, RetentionPolicy, run_job
from radsched.storage.db import Database
from tests.emr.helpers import env

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PHI = b"\x01\x01sealed"


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


async def seed(conn: asyncpg.Connection) -> None:
    """Pairs of rows either side of each boundary: 'old' must go, 'new' must stay."""
    for label, at in (("old", ago(days=2556)), ("new", ago(days=2554))):
        await conn.execute(
            "INSERT INTO sms_audit_log (occurred_at, phone_hash, message_type, direction, outcome)"
            " VALUES ($1, $2, 'consent_request', 'outbound', $3)",
            at,
            "0" * 64,
            label,
        )
        await conn.execute(
            "INSERT INTO config_audit (changed_at, changed_by, item, new_value, note)"
            " VALUES ($1, 'ops', 'modality:CT', 'enabled', $2)",
            at,
            label,
        )
    for label, created, ended, expires in (
        ("ended", ago(hours=2), ago(hours=1), ago(hours=-22)),  # ended: PHI goes now
        ("expired", ago(hours=25), None, ago(hours=1)),
        ("live", ago(hours=2), None, ago(hours=-22)),  # live conversation keeps its PHI
    ):
        await conn.execute(
            "INSERT INTO sms_conversations (id, phone_hash, order_key, modality, state, phi,"
            " created_at, expires_at, ended_at) VALUES ($1, $2, $3, 'CT', $4, $5, $6, $7, $8)",
            uuid.uuid4(),
            "1" * 64,
            f"conv-{label}",
            label,
            PHI,
            created,
            expires,
            ended,
        )
    for key, state, received in (
        ("booked-old", "booked", ago(hours=25)),  # settled and 24 h old: goes
        ("booked-new", "booked", ago(hours=2)),  # settled but recent: stays
        ("conv-expired", "texting", ago(hours=25)),  # its conversation expired: goes
        ("conv-live", "texting", ago(hours=25)),  # its conversation is live: stays
        ("deferred-new", "deferred", ago(days=10)),  # staff may still need it: stays
        ("deferred-old", "deferred", ago(days=31)),  # past open_order_days: goes
    ):
        await conn.execute(
            "INSERT INTO orders (id, order_key, source, modality, state, phi, received_at,"
            " updated_at, correlation_id) VALUES ($1, $2, 'mllp', 'CT', $3, $4, $5, $5, 'c')",
            uuid.uuid4(),
            key,
            state,
            PHI,
            received,
        )
    for cid, state, created, dead_at, body in (
        ("DELIVERED-BODY", "delivered", ago(hours=1), None, PHI),  # straggler body: goes
        ("PENDING", "pending", ago(days=40), None, PHI),  # undelivered: always kept
        ("DEAD-OLD", "dead", ago(days=40), ago(days=31), PHI),  # dead letter body past 30 d: goes
        ("DEAD-NEW", "dead", ago(days=5), ago(days=5), PHI),  # may still be retried: stays
        ("ANCIENT", "delivered", ago(days=2556), None, None),  # metadata past 7 years: row goes
    ):
        await conn.execute(
            "INSERT INTO hl7_outbox (destination, control_id, message_type, payload, state,"
            " created_at, next_attempt_at, delivered_at, dead_at, correlation_id)"
            " VALUES ('emr', $1, 'SIU^S12', $2, $3, $4, $4, $5, $6, 'c')",
            cid,
            body,
            state,
            created,
            created if state == "delivered" else None,
            dead_at,
        )
    for sms_state, created in (
        ("sent", ago(hours=1)),  # sent: body goes
        ("pending", ago(hours=30)),  # not sent: stays
        ("failed", ago(hours=30)),  # failed a day ago: goes
        ("failed", ago(hours=2)),  # failed recently: stays
    ):
        await conn.execute(
            "INSERT INTO sms_outbox (phone_hash, template_id, payload, state, created_at,"
            " correlation_id) VALUES ($1, 't', $2, $3, $4, 'c')",
            "2" * 64,
            PHI,
            sms_state,
            created,
        )
    for cid, received in (("OLD", ago(days=31)), ("NEW", ago(days=29))):
        await conn.execute(
            "INSERT INTO inbound_messages (sender, control_id, message_type, received_at,"
            " ack_code, ack_payload, correlation_id) VALUES ('RIS^X', $1, 'ORM^O01', $2, 'AA',"
            " 'ack', 'c')",
            cid,
            received,
        )
    for digest, received in ((b"O" * 32, ago(days=401)), (b"N" * 32, ago(days=399))):
        await conn.execute(
            "INSERT INTO webhook_signatures (signature_sha256, received_at) VALUES ($1, $2)",
            digest,
            received,
        )


async def test_purge_removes_exactly_what_it_should(db: Database) -> None:
    async with db.transaction("test.seed") as conn:
        await seed(conn)
    report = await run_job(db, NOW, RetentionPolicy(), wait=False, only_if_due=True)
    assert report.ran
    removed = report.removed
    assert removed["sms_audit_log rows"] == 1 and removed["config_audit rows"] == 1
    assert removed["conversation PHI"] == 2
    assert removed["order PHI"] == 3
    assert removed["hl7_outbox rows"] == 1
    assert removed["hl7_outbox delivered bodies"] == 1
    assert removed["hl7_outbox dead-letter bodies"] == 1
    assert removed["sms_outbox sent bodies"] == 2
    assert removed["inbound_messages rows"] == 1
    assert removed["webhook_signatures rows"] == 1

    async with db.transaction("test.check") as conn:
        assert [r["outcome"] for r in await conn.fetch("SELECT outcome FROM sms_audit_log")] == [
            "new"
        ]
        with_phi = await conn.fetch("SELECT order_key FROM sms_conversations WHERE phi IS NOT NULL")
        assert [r["order_key"] for r in with_phi] == ["conv-live"]
        orders = await conn.fetch(
            "SELECT order_key FROM orders WHERE phi IS NOT NULL ORDER BY order_key"
        )
        assert [r["order_key"] for r in orders] == ["booked-new", "conv-live", "deferred-new"]
        outbox = await conn.fetch(
            "SELECT control_id, payload IS NOT NULL AS body FROM hl7_outbox ORDER BY control_id"
        )
        assert {r["control_id"]: r["body"] for r in outbox} == {
            "DEAD-NEW": True,
            "DEAD-OLD": False,
            "DELIVERED-BODY": False,
            "PENDING": True,
        }
        sms = await conn.fetch(
            "SELECT state, payload IS NOT NULL AS body FROM sms_outbox ORDER BY id"
        )
        assert [r["body"] for r in sms] == [False, True, False, True]
        inbound = await conn.fetch("SELECT control_id FROM inbound_messages")
        assert [r["control_id"] for r in inbound] == ["NEW"]
        signatures = await conn.fetch("SELECT signature_sha256 FROM webhook_signatures")
        assert [bytes(r["signature_sha256"]) for r in signatures] == [b"N" * 32]
        run = await conn.fetchrow("SELECT * FROM maintenance_runs WHERE job = 'retention'")
        assert run["finished_at"] == NOW and json.loads(run["result"]) == removed

    # Daily: not again within 24 h (another daemon's timer), again after.
    assert not (
        await run_job(
            db, NOW + timedelta(hours=23), RetentionPolicy(), wait=False, only_if_due=True
        )
    ).ran
    again = await run_job(
        db, NOW + timedelta(hours=25), RetentionPolicy(), wait=False, only_if_due=True
    )
    assert again.ran  # (rows near the boundaries have aged into the policy by then)


async def test_one_daemon_at_a_time(db: Database) -> None:
    async with db.pool.acquire() as other, other.transaction():
        await other.execute("SELECT pg_advisory_xact_lock($1::int4, $2::int4)", *LOCK_KEY)
        busy = await run_job(db, NOW, RetentionPolicy(), wait=False, only_if_due=True)
    assert not busy.ran
    assert (await run_job(db, NOW, RetentionPolicy(), wait=False, only_if_due=True)).ran


def test_purge_command_prints_what_it_removed(data_dir: Path, database_url: str) -> None:
    environment = {
        **env(database_url),
        "RADSCHED_DATA_DIR": str(data_dir),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "radsched", "purge", "--json"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    removed = json.loads(result.stdout)
    assert removed["sms_audit_log rows"] == 0 and "inbound_messages rows" in removed
