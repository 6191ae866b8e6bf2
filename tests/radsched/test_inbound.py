"""Inbound MLLP: commit before ACK, duplicates answered with the original ACK, clear NAKs, no lost data.

Real parts throughout: the ``mllp`` server and client on loopback, a real PostgreSQL database, and the
router exactly as the daemon wires it. The handler here is the test's own (inserting into a scratch
table) so that the router's guarantees are checked independently of the order-intake component.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

import mllp
from channels import AckCode, Message, Party, read_ack
from channels import parse as parse_hl7
from radsched.hl7metrics import HL7Metrics
from radsched.inbound.router import AckDecision, InboundContext, InboundRouter, Rejected
from radsched.storage.db import Database
from tests.channels.hl7check import assert_valid_hl7

FIXED = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def orm(control_id: str, *, version: str = "2.3", msh15: str = "", trigger: str = "O01") -> bytes:
    msh = (
        f"MSH|^~\\&|SYNAPSE|RADIOLOGY|RADSCHED|RADSCHED|20261127100000||ORM^{trigger}|{control_id}|P|{version}"
        + (f"|||{msh15}" if msh15 else "")
    )
    return (
        msh + "\rPID|1||MRN0001^^^HOSP^MR||TEST^PATIENT||19800101|F|||||^PRN^CP^^1^555^0100123\r"
        "ORC|NW|PL1001|FL2001\rOBR|1|PL1001|FL2001|71045^XR CHEST 2V^CPT||||||||||||||||||||CR\r"
    ).encode()


@dataclass
class Scratch:
    calls: list[str] = field(default_factory=list)
    fail_next: int = 0
    reject: set[str] = field(default_factory=set)
    decide: dict[str, AckDecision] = field(default_factory=dict)


@pytest.fixture
async def setup(db: Database) -> AsyncIterator[tuple[mllp.Server, Scratch, Database]]:
    async with db.transaction("test.setup") as conn:
        await conn.execute("CREATE TABLE scratch_orders (control_id text PRIMARY KEY)")
    scratch = Scratch()

    async def handler(conn: asyncpg.Connection, msg: Message, ctx: InboundContext) -> AckDecision:
        scratch.calls.append(msg.control_id)
        await conn.execute("INSERT INTO scratch_orders VALUES ($1)", msg.control_id)
        if scratch.fail_next:
            scratch.fail_next -= 1
            raise RuntimeError("database went away")
        if msg.control_id in scratch.reject:
            raise Rejected("no usable mobile number in PID-13", location="PID-13")
        return scratch.decide.get(msg.control_id, AckDecision())

    router = InboundRouter(
        db,
        Party("RADSCHED", "RADSCHED"),
        HL7Metrics(CollectorRegistry()),
        tz=ZoneInfo("America/New_York"),
        clock=lambda: FIXED,
    )
    router.register("ORM^O01", handler)
    server = await mllp.start_server(
        router.handle_frame,
        "127.0.0.1",
        0,
        on_framing_error=router.on_framing_error,
        max_frame_size=64 * 1024,
    )
    yield server, scratch, db
    await server.aclose(1.0)


async def stored(db: Database, control_id: str) -> bool:
    async with db.transaction("test.read") as conn:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM scratch_orders WHERE control_id=$1", control_id
            )
        )


async def test_aa_only_after_commit_and_ack_is_valid_hl7(
    setup: tuple[mllp.Server, Scratch, Database],
) -> None:
    server, _, db = setup
    async with mllp.Client("127.0.0.1", server.port) as client:
        reply = await client.request(orm("C1"), timeout=10)
    ack = read_ack(parse_hl7(reply))
    assert (ack.code, ack.control_id) == (AckCode.AA, "C1")
    assert await stored(db, "C1")  # visible to another connection the moment the ACK arrived
    assert_valid_hl7(reply)
    assert b"ACK^O01" in reply and b"|2.3" in reply


async def test_duplicate_gets_original_ack_and_no_second_processing(
    setup: tuple[mllp.Server, Scratch, Database],
) -> None:
    server, scratch, _ = setup
    async with mllp.Client("127.0.0.1", server.port) as client:
        first = await client.request(orm("DUP1"), timeout=10)
        second = await client.request(orm("DUP1"), timeout=10)
    assert first == second
    assert scratch.calls == ["DUP1"]


async def test_concurrent_duplicates_on_two_connections_process_once(
    setup: tuple[mllp.Server, Scratch, Database],
) -> None:
    server, scratch, _ = setup
    async with (
        mllp.Client("127.0.0.1", server.port) as a,
        mllp.Client("127.0.0.1", server.port) as b,
    ):
        replies = await asyncio.gather(
            *(c.request(orm(f"R{i}"), timeout=10) for i in range(10) for c in (a, b))
        )
    assert all(read_ack(parse_hl7(r)).code == AckCode.AA for r in replies)
    assert sorted(scratch.calls) == sorted(f"R{i}" for i in range(10))


async def test_garbage_gets_a_nak_that_says_why_and_the_connection_survives(
    setup: tuple[mllp.Server, Scratch, Database],
) -> None:
    server, _, _ = setup
    async with mllp.Client("127.0.0.1", server.port) as client:
        nak = await client.request(b"this is not HL7 at all", timeout=10)
        ack = read_ack(parse_hl7(nak))
        assert ack.code == AckCode.AR
        assert "MSH" in ack.text
        assert_valid_hl7(nak)
        ok = await client.request(orm("AFTER-GARBAGE"), timeout=10)
        assert read_ack(parse_hl7(ok)).code == AckCode.AA


@pytest.mark.parametrize(
    ("payload", "error_code", "words"),
    [
        (orm("V1", version="2.9"), "203", "unsupported HL7 version 2.9"),
        (orm("T1", trigger="O02"), "201", "unsupported message type ORM^O02"),
        (orm("").replace(b"ORM^O01|", b"ADT^A01|"), "200", "unsupported message type ADT^A01"),
        (orm(""), "101", "MSH-10 message control id is empty"),
    ],
)
async def test_unsupported_messages_are_rejected_ar_with_reason(
    setup: tuple[mllp.Server, Scratch, Database], payload: bytes, error_code: str, words: str
) -> None:
    server, scratch, _ = setup
    async with mllp.Client("127.0.0.1", server.port) as client:
        reply = await client.request(payload, timeout=10)
    ack = read_ack(parse_hl7(reply))
    assert ack.code == AckCode.AR
    assert words in ack.text
    assert ack.error_code == error_code
    assert scratch.calls == []


@pytest.mark.parametrize("version", ["2.1", "2.2", "2.6", "2.7", "2.8"])
async def test_orders_in_every_version_are_committed_and_acked_in_that_version(
    setup: tuple[mllp.Server, Scratch, Database], version: str
) -> None:
    server, scratch, _ = setup
    payload = orm(f"V{version}", version=version)
    if version >= "2.7":
        payload = payload.replace(b"MSH|^~\\&|", b"MSH|^~\\&#|", 1)
    async with mllp.Client("127.0.0.1", server.port) as client:
        reply = await client.request(payload, timeout=10)
    msg = parse_hl7(reply)
    assert read_ack(msg).code == AckCode.AA and msg.version == version
    assert msg.encoding_characters == ("^~\\&#" if version >= "2.7" else "^~\\&")
    assert_valid_hl7(reply)
    assert scratch.calls == [f"V{version}"]


async def test_a_resend_gets_the_answer_the_handler_gave_not_the_plain_accept(
    setup: tuple[mllp.Server, Scratch, Database],
) -> None:
    # The router records a plain AA with the message before its handler runs (one round trip); an
    # answer with a text, or another code, must replace it before the commit.
    server, scratch, db = setup
    scratch.decide["SC1"] = AckDecision(AckCode.AA, "order control SC not acted on")
    scratch.decide["AE1"] = AckDecision(AckCode.AE, "not for this department")
    async with mllp.Client("127.0.0.1", server.port) as client:
        replies = {
            cid: [await client.request(orm(cid), timeout=10) for _ in range(2)]
            for cid in ("SC1", "AE1", "AA1")
        }
    for first, again in replies.values():
        assert first == again
    assert read_ack(parse_hl7(replies["SC1"][0])).text == "order control SC not acted on"
    assert read_ack(parse_hl7(replies["AE1"][0])).code == AckCode.AE
    assert read_ack(parse_hl7(replies["AA1"][0])).text == ""
    assert scratch.calls == ["SC1", "AE1", "AA1"]
    async with db.transaction("test.read") as conn:
        rows = dict(await conn.fetch("SELECT control_id, ack_code FROM inbound_messages"))
    assert rows == {"SC1": "AA", "AE1": "AE", "AA1": "AA"}


async def test_rejected_content_is_ae_rolled_back_and_remembered(
    setup: tuple[mllp.Server, Scratch, Database],
) -> None:
    server, scratch, db = setup
    scratch.reject.add("REJ1")
    async with mllp.Client("127.0.0.1", server.port) as client:
        first = read_ack(parse_hl7(await client.request(orm("REJ1"), timeout=10)))
        again = read_ack(parse_hl7(await client.request(orm("REJ1"), timeout=10)))
    assert first.code == again.code == AckCode.AE
    assert "mobile" in first.text
    assert not await stored(db, "REJ1")
    assert scratch.calls == ["REJ1"]


async def test_transient_failure_is_ar_and_a_resend_succeeds(
    setup: tuple[mllp.Server, Scratch, Database],
) -> None:
    server, scratch, db = setup
    scratch.fail_next = 1
    async with mllp.Client("127.0.0.1", server.port) as client:
        first = read_ack(parse_hl7(await client.request(orm("T9"), timeout=10)))
        assert first.code == AckCode.AR and "resend" in first.text
        assert not await stored(db, "T9")
        second = read_ack(parse_hl7(await client.request(orm("T9"), timeout=10)))
    assert second.code == AckCode.AA
    assert await stored(db, "T9")


async def test_enhanced_mode_gets_commit_accept(
    setup: tuple[mllp.Server, Scratch, Database],
) -> None:
    server, _, _ = setup
    async with mllp.Client("127.0.0.1", server.port) as client:
        reply = await client.request(orm("E1", version="2.5.1", msh15="AL"), timeout=10)
    assert read_ack(parse_hl7(reply)).code == AckCode.CA
    assert b"ACK^O01^ACK" in reply
    assert_valid_hl7(reply)


async def test_oversized_frame_is_naked_and_other_connections_keep_working(
    setup: tuple[mllp.Server, Scratch, Database],
) -> None:
    server, _, _ = setup
    big = orm("BIG") + b"NTE|1||" + b"x" * (128 * 1024) + b"\r"
    async with (
        mllp.Client("127.0.0.1", server.port) as bad,
        mllp.Client("127.0.0.1", server.port) as good,
    ):
        nak = read_ack(parse_hl7(await bad.request(big, timeout=10)))
        assert nak.code == AckCode.AR and "oversize" in nak.text
        assert read_ack(parse_hl7(await good.request(orm("G1"), timeout=10))).code == AckCode.AA
        assert read_ack(parse_hl7(await bad.request(orm("G2"), timeout=10))).code == AckCode.AA


async def test_accept_ack_never_but_application_ack_wanted_gets_the_application_ack(
    setup: tuple[mllp.Server, Scratch, Database],
) -> None:
    """MSH-15 NE, MSH-16 empty (= AL): no CA, but the sender still gets its AA (HAPI's 2.2 samples)."""
    server, scratch, _ = setup
    async with mllp.Client("127.0.0.1", server.port) as client:
        reply = await client.request(orm("NE1", version="2.2", msh15="NE"), timeout=10)
    msg = parse_hl7(reply)
    assert read_ack(msg).code == AckCode.AA and msg.version == "2.2"
    assert_valid_hl7(reply)
    assert scratch.calls == ["NE1"]
