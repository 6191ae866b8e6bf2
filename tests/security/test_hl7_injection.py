"""Attacker-controlled text never changes the structure of an HL7 message or a query.

Two runs on one daemon (its RIS a simulated RIS we hold, its EMR a loopback peer): a clean one,
and one where everything an outsider can type is hostile. The patient's texts carry HL7
delimiters, escape sequences, CR/LF, MLLP control bytes, SQL and 1,600 characters; the REST
order and booking carry delimiters and SQL in their identifiers; the ORM's patient name carries
every ER7 escape. Every HL7 message that left the daemon (to the RIS and to the EMR) must then
parse with the same segments and the same field count per segment as in the clean run, every
one must pass hl7apy's strict validation, and the database must still hold its tables and rows.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from channels import parse
from mllp import Client
from mllp.testing import LoopbackPeer
from radsched.simris import SimRis, default_calendar
from tests.channels.hl7check import assert_valid_hl7
from tests.security.conftest import API_KEY, PUBLIC_URL, Secured, SecuredFactory
from tests.smsflow.conftest import Patient, orm
from tests.twilio_double import inbound_form, sign

HOSTILE_TEXTS = [
    "1|^~\\&|EVIL|HOSP\rMSH|^~\\&|EVIL|HOSP|||20260101||ORM^O01|X|P|2.3\rPID|||666",
    "\\F\\\\S\\\\T\\\\R\\\\E\\\\X0D\\\\.br\\ yes",
    "'; DROP TABLE orders; -- \x0b\x1c\r\n",
    "Z" * 1600,
]
HOSTILE_ID = "EV|^~\\&'x;--"  # ≤ 64 chars, no control characters (the REST identifier rule)
HOSTILE_MRN = "M&R^N|1~2\\"
ESCAPED_FAMILY = "O\\F\\BRIEN\\S\\X\\T\\Y\\R\\Z\\E\\"  # every ER7 escape, in a real ORM


@dataclass
class Captured:
    ris: SimRis
    emr: LoopbackPeer
    s: Secured


@pytest.fixture
async def captured(secured: SecuredFactory) -> AsyncIterator[Captured]:
    ris = SimRis(default_calendar())
    await ris.start()
    try:
        async with (
            LoopbackPeer() as emr,
            secured(
                ris_addr=f"127.0.0.1:{ris.port}",
                emr_routes=f"*=127.0.0.1:{emr.port}",
                rate_limit_sms_per_min=0,
            ) as s,
        ):
            yield Captured(ris, emr, s)
    finally:
        await ris.aclose()


def patient(*, hostile: bool) -> Patient:
    if hostile:
        return Patient(family=ESCAPED_FAMILY, given="ANN", area="217")
    return Patient(family="DOE", given="ANN", area="217")


def random_phone() -> str:
    return patient(hostile=False).e164


async def text(c: Captured, phone: str, body: str) -> str:
    before = len(c.s.twilio.accepted)
    form = inbound_form(c.s.twilio.account_sid, from_=phone, body=body, to="+15005550006")
    signature = sign(c.s.twilio.auth_token, PUBLIC_URL + "/sms/inbound", form)
    status, _, _ = await c.s.post(
        "/sms/inbound", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert status == 200
    texts = await c.s.twilio.wait_accepted(before + 1)
    return texts[-1].body


async def conversation(c: Captured, *, hostile: bool) -> None:
    person = patient(hostile=hostile)
    phone = person.e164
    order_id = ("SMS" + secrets.token_hex(3)).upper()
    host, port = c.s.mllp
    texts_before = len(c.s.twilio.accepted)
    async with Client(host, port) as client:
        reply = await client.request(orm("C" + secrets.token_hex(6), order_id, person), timeout=10)
    assert b"MSA|AA|" in reply
    await c.s.twilio.wait_accepted(texts_before + 1)  # the consent request
    before = await sms_bookings(c)
    steps = ["YES", "1", "1"]
    for i, answer in enumerate(steps):
        if hostile:
            await text(c, phone, HOSTILE_TEXTS[i])
        await text(c, phone, answer)
    if hostile:
        await text(c, phone, HOSTILE_TEXTS[3])
    assert await sms_bookings(c) == before + 1, "the conversation did not book"


async def sms_bookings(c: Captured) -> int:
    async with c.s.daemon.db.transaction("test.read") as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM bookings WHERE source = 'sms' AND state = 'booked'"
            )
        )


async def rest_booking(c: Captured, *, hostile: bool) -> None:
    order_id = HOSTILE_ID + secrets.token_hex(2) if hostile else "REST" + secrets.token_hex(3)
    mrn = HOSTILE_MRN if hostile else "MRN2"
    status, body = await c.s.order(
        {"order_id": order_id, "mrn": mrn, "phone": random_phone(), "modality": "CR"}
    )
    assert status == 202, body
    _, _, locs = await c.s.get("/api/ris/locations", modality="CR")
    location = locs["locations"][0]["id"]
    day = datetime.now(c.s.daemon.tz).date().isoformat()
    _, _, slots = await c.s.get(
        "/api/ris/available-slots", location=location, modality="CR", date=day, days="14"
    )
    slot = slots["slots"][-1 if hostile else -2]
    booking = {
        "order_id": order_id,
        "mrn": mrn,
        "modality": "CR",
        "location": location,
        "slot_id": slot["id"],
    }
    status, _, answer = await c.s.post(
        "/api/ris/book-appointment", json=booking, headers={"X-API-Key": API_KEY}
    )
    assert status == 201, answer


def shape(payload: bytes) -> tuple[str, tuple[tuple[str, int], ...]]:
    """Message type and (segment, field count) per segment, as an independent parser reads it."""
    msg = parse(payload)
    assert_valid_hl7(payload)
    segments = [s for s in payload.split(b"\r") if s]
    fs = payload[3:4]
    return (
        f"{msg.message_type}^{msg.trigger}",
        tuple((s[:3].decode(), len(s.split(fs))) for s in segments),
    )


def shapes(frames: list[bytes]) -> dict[str, set[tuple[tuple[str, int], ...]]]:
    out: dict[str, set[tuple[tuple[str, int], ...]]] = defaultdict(set)
    for frame in frames:
        kind, layout = shape(frame)
        out[kind].add(layout)
    return out


async def sent_frames(c: Captured, emr_before: int, ris_before: int) -> list[bytes]:
    return [req for req, _ in list(c.ris.exchanges)[ris_before:]] + c.emr.received[emr_before:]


async def test_hostile_input_never_changes_message_structure(captured: Captured) -> None:
    c = captured
    await conversation(c, hostile=False)
    await rest_booking(c, hostile=False)
    await c.emr.wait_for_frames(2, timeout=10)
    clean = shapes(await sent_frames(c, 0, 0))
    emr_mark, ris_mark = len(c.emr.received), len(c.ris.exchanges)

    await conversation(c, hostile=True)
    await rest_booking(c, hostile=True)
    await c.emr.wait_for_frames(emr_mark + 2, timeout=10)
    hostile = shapes(await sent_frames(c, emr_mark, ris_mark))

    # (Locations are cached, so the hostile run need not ask for them again.)
    assert set(hostile) <= set(clean), (clean, hostile)
    assert {"SQM^S25", "SRM^S01", "SIU^S12"} <= set(hostile)
    for kind, layouts in hostile.items():
        assert layouts <= clean[kind], f"{kind}: {layouts - clean[kind]} not in a clean run"

    # The escaped name and the hostile identifiers arrived intact, as data.
    siu = [f for f in c.emr.received[emr_mark:] if b"\\F\\BRIEN" in f or b"EV\\F\\" in f]
    assert len(siu) == 2, "hostile values should travel escaped, not be dropped"
    async with c.s.daemon.db.transaction("test.read") as conn:
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        orders = await conn.fetchval("SELECT count(*) FROM orders")
    assert tables >= 10 and orders == 4
    assert all(ack for _, ack in c.ris.exchanges)


async def test_messages_for_an_api_order_are_valid_hl7(captured: Captured) -> None:
    await rest_booking(captured, hostile=False)
    [siu] = await captured.emr.wait_for_frames(1, timeout=10)
    for request, _ in captured.ris.exchanges:
        assert_valid_hl7(request)
    assert_valid_hl7(siu)
