"""Privacy proof for the REST booking path and the SIU path (tests/smsflow/test_privacy.py covers
whole SMS conversations; this reuses its needles so both proofs search for the same spellings).

Two orders arrive the two ways an order can (ORM^O01 over MLLP with name, DOB and phone; POST
/api/orders with MRN and phone) and are booked through ``POST /api/ris/book-appointment``. The
EMR holds its ACK for the first SIU^S12, so the queued row can be inspected: its body is sealed
(and opens, with the daemon's PHI_KEY only, to the SIU carrying the MRN). Once the EMR answers,
every body is deleted. Then every row of every table, every log record (both formatters),
stdout/stderr and the metrics page are searched for the patients' phone numbers in every common
spelling, MRNs, names, dates of birth and order ids.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from mllp import Client
from mllp.testing import LoopbackPeer, ack_for
from radsched.emr.enqueue import open_body
from radsched.logs import JsonFormatter, TextFormatter
from tests.security.conftest import API_KEY, Secured, SecuredFactory
from tests.smsflow.conftest import Patient, orm
from tests.smsflow.test_privacy import needles
from tests.waiting import eventually


@dataclass
class Rig:
    s: Secured
    emr: LoopbackPeer
    release: asyncio.Event


@pytest.fixture
async def rig(secured: SecuredFactory) -> AsyncIterator[Rig]:
    release = asyncio.Event()

    async def held_ack(payload: bytes) -> bytes:
        await release.wait()  # the EMR is slow: the SIU sits sealed in the outbox meanwhile
        return ack_for(payload)

    async with LoopbackPeer(held_ack) as emr, secured(emr_routes=f"*=127.0.0.1:{emr.port}") as s:
        yield Rig(s, emr, release)
        release.set()


async def book_by_rest(s: Secured, order_id: str, mrn: str) -> None:
    _, _, locations = await s.get("/api/ris/locations", modality="CR")
    location = locations["locations"][0]["id"]
    day = datetime.now(s.daemon.tz).date().isoformat()
    _, _, slots = await s.get(
        "/api/ris/available-slots", location=location, modality="CR", date=day, days="14"
    )
    slot = slots["slots"][secrets.randbelow(len(slots["slots"]))]
    body = {"order_id": order_id, "mrn": mrn, "modality": "CR", "location": location}
    status, _, answer = await s.post(
        "/api/ris/book-appointment",
        json={**body, "slot_id": slot["id"]},
        headers={"X-API-Key": API_KEY},
    )
    assert status == 201, answer


async def outbox(s: Secured) -> list[dict[str, object]]:
    async with s.daemon.db.transaction("test.outbox") as conn:
        rows = await conn.fetch(
            "SELECT destination, control_id, state, payload FROM hl7_outbox ORDER BY id"
        )
    return [dict(r) for r in rows]


async def dump_everything(s: Secured) -> str:
    async with s.daemon.db.transaction("test.dump") as conn:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
        )
        parts: list[str] = []
        for row in tables:
            name = row["table_name"]
            rows = await conn.fetch(f'SELECT t::text AS r FROM "{name}" t')
            parts += [f"{name}: {r['r']}" for r in rows]
    assert any(p.startswith("bookings:") for p in parts)
    return "\n".join(parts)


async def test_rest_bookings_and_their_siu_leave_no_patient_data(
    rig: Rig, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    s = rig.s
    # Order 1: ORM^O01 over MLLP, with name, DOB and phone.
    hl7_patient, hl7_order = Patient(), "PR" + secrets.token_hex(5).upper()
    host, port = s.mllp
    async with Client(host, port) as client:
        ack = await client.request(
            orm("C" + secrets.token_hex(6), hl7_order, hl7_patient), timeout=10
        )
    assert b"MSA|AA|" in ack
    # Order 2: the order webhook, MRN and phone only.
    api_patient, api_order = Patient(), "PA" + secrets.token_hex(5).upper()
    status, _ = await s.order(
        {"order_id": api_order, "mrn": api_patient.mrn, "phone": api_patient.e164, "modality": "CR"}
    )
    assert status == 202

    await book_by_rest(s, hl7_order, hl7_patient.mrn)
    [first] = await rig.emr.wait_for_frames(1, timeout=10)  # the EMR has it, and holds its ACK
    await book_by_rest(s, api_order, api_patient.mrn)

    # While undelivered: sealed at rest, and only PHI_KEY opens it.
    queued = await outbox(s)
    assert len(queued) == 2 and all(r["state"] == "pending" for r in queued)
    for row in queued:
        sealed = bytes(row["payload"])  # type: ignore[arg-type]
        for needle in (hl7_patient.mrn, api_patient.mrn, hl7_patient.family, "SIU", "PID|"):
            assert needle.encode() not in sealed
    opened = open_body(
        s.daemon.phi,
        str(queued[0]["destination"]),
        str(queued[0]["control_id"]),
        bytes(queued[0]["payload"]),  # type: ignore[arg-type]
    )
    assert opened == first and hl7_patient.mrn.encode() in opened

    # Delivered: every body gone, the metadata kept.
    rig.release.set()
    await rig.emr.wait_for_frames(2, timeout=10)

    async def delivered() -> bool:  # delivery is recorded after the ACK
        return all(r["state"] == "delivered" for r in await outbox(s))

    await eventually(delivered, timeout=10, what="every SIU marked delivered")
    assert all(r["payload"] is None for r in await outbox(s))

    search = needles(hl7_patient, hl7_order, []) | {
        f"api {k}": v for k, v in needles(api_patient, api_order, []).items()
    }
    for what in (
        "family name",
        "given name",
        "family name (title case)",
        "date of birth",
        "date of birth (ISO)",
    ):
        search.pop(f"api {what}")  # the order webhook never carried these
    rendered = [f.format(r) for r in caplog.records for f in (JsonFormatter(), TextFormatter())]
    captured = capsys.readouterr()
    haystacks = {
        "database": await dump_everything(s),
        "logs": "\n".join(rendered),
        "stdout/stderr": captured.out + captured.err,
        "metrics": s.daemon.metrics.render().decode(),
    }
    leaks = [
        f"{what} found in {where}"
        for where, text in haystacks.items()
        for what, needle in search.items()
        if needle in text
    ]
    assert leaks == []
