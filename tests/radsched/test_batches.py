"""HL7 batches through the real listener (issue 15 item 3): each message committed on its own before the
response batch; BHS-12 names the sender's batch; every ACK inside validates in its version (hl7apy).

Real parts: the mllp server and client on loopback, PostgreSQL, the router as the daemon wires it, with
the test's own handler (a scratch table), as in test_inbound.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

import mllp
from channels import AckCode, Message, Party, read_ack
from channels import parse as parse_hl7
from channels.batch import parse_batch
from radsched.hl7metrics import HL7Metrics
from radsched.inbound.batches import BatchAckMode, BatchListener
from radsched.inbound.router import AckDecision, InboundContext, InboundRouter, Rejected
from radsched.storage.db import Database
from tests.channels.hl7check import assert_valid_hl7

FIXED = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
ME = Party("RADSCHED", "RADSCHED")


def _msg(control_id: str, *, ack_modes: str = "") -> str:
    return (
        f"MSH|^~\\&|RIS|RADCO|RADSCHED|RADSCHED|20261127100000||ORM^O01^ORM_O01|{control_id}|P|2.5"
        f"{ack_modes}\rPID|1||MRN1^^^RADCO^MR||TEST^PATIENT\rORC|NW|PL{control_id}\r"
        f"OBR|1|PL{control_id}||71045^XR CHEST^C4\r"
    )


def batch(*control_ids: str, ack_modes: str = "") -> bytes:
    body = "".join(_msg(c, ack_modes=ack_modes) for c in control_ids)
    return (
        "FHS|^~\\&|RIS|RADCO|RADSCHED|RADSCHED|20261127100000||||F1\r"
        "BHS|^~\\&|RIS|RADCO|RADSCHED|RADSCHED|20261127100000||||B1\r"
        f"{body}BTS|{len(control_ids)}\rFTS|1\r"
    ).encode()


@pytest.fixture(params=["all", "errors"])
async def setup(
    db: Database, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[mllp.Server, list[str], Database, str]]:
    async with db.transaction("test.setup") as conn:
        await conn.execute("CREATE TABLE scratch_orders (control_id text PRIMARY KEY)")
    calls: list[str] = []

    async def handler(conn: asyncpg.Connection, msg: Message, ctx: InboundContext) -> AckDecision:
        calls.append(msg.control_id)
        await conn.execute("INSERT INTO scratch_orders VALUES ($1)", msg.control_id)
        if msg.control_id.startswith("BAD"):
            raise Rejected("no usable mobile number in PID-13", location="PID-13")
        return AckDecision()

    tz = ZoneInfo("America/New_York")
    router = InboundRouter(db, ME, HL7Metrics(CollectorRegistry()), tz=tz, clock=lambda: FIXED)
    router.register("ORM^O01", handler)
    mode: BatchAckMode = request.param
    listener = BatchListener(router.handle_frame, ME, mode=mode, tz=tz, clock=lambda: FIXED)
    server = await mllp.start_server(listener.handle_frame, "127.0.0.1", 0)
    yield server, calls, db, mode
    await server.aclose(1.0)


async def _stored(db: Database) -> list[str]:
    async with db.transaction("test.read") as conn:
        rows = await conn.fetch("SELECT control_id FROM scratch_orders ORDER BY control_id")
    return [r["control_id"] for r in rows]


async def test_each_message_committed_then_one_response_batch(
    setup: tuple[mllp.Server, list[str], Database, str],
) -> None:
    server, calls, db, mode = setup
    async with mllp.Client("127.0.0.1", server.port) as client:
        reply = await client.request(batch("OK1", "BAD1", "OK2"), timeout=10)
        again = await client.request(batch("OK1", "BAD1", "OK2"), timeout=10)
    assert calls == ["OK1", "BAD1", "OK2"]  # the resend was answered from the stored ACKs
    assert await _stored(db) == ["OK1", "OK2"]  # the AE's writes were rolled back
    answer = parse_batch(reply)
    assert answer.file_header is not None and answer.batch_header is not None
    assert reply.split(b"\r")[1].endswith(b"|B1")  # BHS-12 = the sender's BHS-11
    acks = [read_ack(parse_hl7(m)) for m in answer.messages]
    expected = [("OK1", AckCode.AA), ("BAD1", AckCode.AE), ("OK2", AckCode.AA)]
    if mode == "errors":
        expected = [("BAD1", AckCode.AE)]
    assert [(a.control_id, a.code) for a in acks] == expected
    assert answer.declared_count == len(expected)
    for message in answer.messages:
        assert_valid_hl7(message)
    assert [read_ack(parse_hl7(m)).code for m in parse_batch(again).messages] == [
        c for _, c in expected
    ]


async def test_batch_asking_for_no_acks_gets_no_answer_but_is_stored(
    setup: tuple[mllp.Server, list[str], Database, str],
) -> None:
    server, calls, db, _ = setup
    # The batch (every message NE/NE) then a single message, on one connection: the first frame that
    # comes back must be the single message's ACK, so the batch got none.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for payload in (batch("NE1", "NE2", ack_modes="|||NE|NE"), _msg("AFTER").encode()):
        writer.write(b"\x0b" + payload + b"\x1c\r")
    await writer.drain()
    frame = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 10)
    writer.close()
    await writer.wait_closed()
    assert read_ack(parse_hl7(frame.strip(b"\x0b\x1c\r") + b"\r")).control_id == "AFTER"
    assert calls == ["NE1", "NE2", "AFTER"] and await _stored(db) == ["AFTER", "NE1", "NE2"]


async def test_single_messages_pass_through(
    setup: tuple[mllp.Server, list[str], Database, str],
) -> None:
    server, _, _, _ = setup
    async with mllp.Client("127.0.0.1", server.port) as client:
        reply = await client.request(_msg("ONE").encode(), timeout=10)
    assert read_ack(parse_hl7(reply)).control_id == "ONE"
