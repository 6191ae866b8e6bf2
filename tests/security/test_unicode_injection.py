"""Fullwidth and other compatibility characters never become HL7 delimiters (issue 11, item 1).

Through the real daemon: a REST order and booking whose MRN and order id carry the fullwidth
delimiters (``｜ ＾ ～ ＼ ＆``) and other characters that NFKD-decompose to ASCII punctuation. On the
ASCII links (the SIU with an empty MSH-18, the whole ``qie-2.3`` RIS link) they used to be
transliterated *after* escaping, so the EMR saw shifted PID fields and the RIS booked another slot
than the one radsched recorded. Now the peers must read exactly the transliterated value, in its
own field, and the RIS must book the slot radsched texted.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from channels import parse
from channels.charset import codec_for, fit
from mllp.testing import LoopbackPeer
from radsched.simris import SimRis, default_calendar
from tests.channels.hl7check import assert_valid_hl7
from tests.security.conftest import API_KEY, Secured, SecuredFactory

# The fullwidth delimiters, then small and other compatibility forms of ASCII punctuation.
HOSTILE = "｜＾～＼＆﹨﹠︱﹣⁄＂＇"
CLEAN_MRN = "MRN7"


@dataclass
class Link:
    ris: SimRis
    emr: LoopbackPeer
    s: Secured
    # What the RIS link's MSH-18 carries: ch10-2.5.1 declares UTF-8, qie-2.3 nothing (ASCII).
    ris_codec: str


@pytest.fixture(params=["ch10-2.5.1", "qie-2.3"])
async def link(request: pytest.FixtureRequest, secured: SecuredFactory) -> AsyncIterator[Link]:
    ris = SimRis(default_calendar())
    await ris.start()
    try:
        async with (
            LoopbackPeer() as emr,
            secured(
                ris_addr=f"127.0.0.1:{ris.port}",
                ris_dialect=request.param,
                emr_routes=f"*=127.0.0.1:{emr.port}",
            ) as s,
        ):
            yield Link(ris, emr, s, "utf-8" if request.param == "ch10-2.5.1" else "ascii")
    finally:
        await ris.aclose()


async def book(link: Link, order_id: str, mrn: str, pick: int) -> dict[str, str]:
    s = link.s
    phone = f"+1217555{secrets.randbelow(9000) + 1000}"
    status, body = await s.order(
        {"order_id": order_id, "mrn": mrn, "phone": phone, "modality": "CR"}
    )
    assert status == 202, body
    _, _, locs = await s.get("/api/ris/locations", modality="CR")
    location = locs["locations"][0]["id"]
    day = datetime.now(s.daemon.tz).date().isoformat()
    _, _, slots = await s.get(
        "/api/ris/available-slots", location=location, modality="CR", date=day, days="14"
    )
    slot: dict[str, str] = slots["slots"][pick]
    booking = {
        "order_id": order_id,
        "mrn": mrn,
        "modality": "CR",
        "location": location,
        "slot_id": slot["id"],
    }
    status, _, answer = await s.post(
        "/api/ris/book-appointment", json=booking, headers={"X-API-Key": API_KEY}
    )
    assert status == 201, answer
    return slot


def layout(payload: bytes) -> tuple[tuple[str, int], ...]:
    msg = parse(payload)
    return tuple((seg.name, seg.field_count) for seg in msg.segments)


async def test_fullwidth_delimiters_stay_data_on_every_link(link: Link) -> None:
    clean_id = "CLEAN" + secrets.token_hex(3)
    await book(link, clean_id, CLEAN_MRN, -2)
    [clean_siu] = await link.emr.wait_for_frames(1, timeout=10)

    hostile_id = "H" + HOSTILE + secrets.token_hex(3)
    hostile_mrn = "M" + HOSTILE + "9"
    slot = await book(link, hostile_id, hostile_mrn, -1)
    [_, siu] = await link.emr.wait_for_frames(2, timeout=10)

    assert_valid_hl7(siu)
    assert layout(siu) == layout(clean_siu), "hostile values shifted the SIU's fields"
    msg = parse(siu)
    codec = codec_for(msg.charset)
    pid = msg.require("PID")
    assert pid.get(3) == fit(hostile_mrn, codec)
    # The RIS booked the very slot radsched recorded (and texted), for the right order.
    booked = [b for b in link.ris.bookings.values() if b.slot.id == slot["id"]]
    assert [b.order_id for b in booked] == [fit(hostile_id, link.ris_codec)]
    for request, _ in link.ris.exchanges:
        assert_valid_hl7(request)
