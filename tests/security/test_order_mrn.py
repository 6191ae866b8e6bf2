"""A REST booking must know the order's MRN, before and after the order's PHI is gone (issue 11
item 6). After an SMS booking ended (and the sealed order with its MRN was purged), a REST booking
with the same order id and slot and a wrong MRN used to return 201 with the confirmation code; with
another slot it said "closed or cancelled" where an unknown id said "no such order", telling that the
order id exists. Now a keyed hash of the MRN is kept with the order, and every "no" is one 404:
same status, same body bytes as an order id nobody ever sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.security.conftest import API_KEY
from tests.smsflow.conftest import Clock, Flow, Patient, start_flow
from tests.smsflow.test_conversation import CODE, book_by_text, new_order_id
from tests.twilio_double import TwilioDouble

BOOK = "/api/ris/book-appointment"


@pytest.fixture
async def flow(database_url: str, data_dir: Path, twilio: TwilioDouble) -> AsyncIterator[Flow]:
    async with start_flow(database_url, data_dir, twilio, Clock(), api_keys=API_KEY) as started:
        yield started


async def book(flow: Flow, **body: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(flow.http + BOOK, json=body, headers={"X-API-Key": API_KEY}) as response,
    ):
        return response.status, await response.read()


async def open_slots(flow: Flow) -> list[dict[str, Any]]:
    day = flow.clock().astimezone(flow.daemon.tz).date().isoformat()
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            flow.http + "/api/ris/available-slots",
            params={"location": "DTWN", "modality": "CR", "date": day, "days": "14"},
            headers={"X-API-Key": API_KEY},
        ) as response,
    ):
        assert response.status == 200
        slots: list[dict[str, Any]] = (await response.json())["slots"]
    return slots


@pytest.fixture
async def ended(flow: Flow) -> tuple[Patient, str, dict[str, str]]:
    """An order booked by text, whose conversation ended and whose PHI was purged."""
    patient, order_id = Patient(), new_order_id()
    confirmation = await book_by_text(flow, patient, order_id)
    code = CODE.search(confirmation.split("Code", 1)[-1])
    assert code
    [booking] = await flow.fetch("SELECT order_key, slot_id, location_id FROM bookings")
    [order] = await flow.fetch("SELECT phi FROM orders WHERE order_key = $1", booking["order_key"])
    assert order["phi"] is None
    request = {
        "order_id": order_id,
        "modality": "CR",
        "location": booking["location_id"],
        "slot_id": booking["slot_id"],
    }
    return patient, code.group(0), request


async def unknown(flow: Flow, request: dict[str, str]) -> tuple[int, bytes]:
    """What an order id nobody ever sent gets, otherwise the same request."""
    return await book(flow, **{**request, "order_id": new_order_id(), "mrn": "M" + "9" * 8})


async def test_a_wrong_mrn_after_an_sms_booking_is_an_unknown_order(
    flow: Flow, ended: tuple[Patient, str, dict[str, str]]
) -> None:
    patient, _, request = ended
    nobody = await unknown(flow, request)
    assert nobody[0] == 404 and b'"unknown_order"' in nobody[1]
    wrong = patient.mrn + "1"
    assert await book(flow, **request, mrn=wrong) == nobody  # the booked slot: no code
    other = next(s["id"] for s in await open_slots(flow) if s["id"] != request["slot_id"])
    assert await book(flow, **{**request, "slot_id": other}, mrn=wrong) == nobody
    # The right MRN, another slot: the order is over; not told apart from unknown either.
    assert await book(flow, **{**request, "slot_id": other}, mrn=patient.mrn) == nobody


async def test_the_right_mrn_still_gets_its_booking_after_the_sms_booking(
    flow: Flow, ended: tuple[Patient, str, dict[str, str]]
) -> None:
    patient, code, request = ended
    status, body = await book(flow, **request, mrn=patient.mrn)
    assert status == 201 and code.encode() in body, body


async def test_a_wrong_mrn_for_an_open_order_is_an_unknown_order(flow: Flow) -> None:
    patient, order_id = Patient(), new_order_id()
    await flow.order(order_id, patient)
    await flow.texts(1)  # stored and texting
    slot = (await open_slots(flow))[0]
    request = {"order_id": order_id, "modality": "CR", "location": "DTWN", "slot_id": slot["id"]}
    nobody = await unknown(flow, request)
    assert await book(flow, **request, mrn=patient.mrn + "1") == nobody
    status, body = await book(flow, **request, mrn=patient.mrn)
    assert status == 201, body
