"""Two daemons, the REST contract both ways: an SMS engine whose RIS is a radsched gateway over REST.

Daemon A holds the conversation; daemon B is the gateway (REST facade → HL7 → simulated RIS) with the
EMR outbox (→ an EMR on loopback). They share one database and its keys, as two daemons with different
roles do. The patient's README conversation must complete over REST, the booking must be made once on
the RIS (by B, over HL7), and the SIU must reach the EMR once.

A runs with ``SCHEDULING_BACKEND=rest`` pointed at B's facade. Until the root starts components by
role (``ROLES=sms`` on A, ``ROLES=gateway,emr`` on B), A is otherwise a whole daemon whose own RIS
stays unused.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from channels import AckCode
from channels import parse as parse_hl7
from mllp.testing import LoopbackPeer
from radsched.scheduling.rest_backend import EngineEndpoint, RestEngineClient, RestScheduling
from radsched.simris import SimRis, default_calendar
from tests.channels.hl7check import assert_valid_hl7
from tests.conftest import private_tmp
from tests.emr.helpers import eventually, reply_with
from tests.smsflow.conftest import SCHEDULING_PHONE, Clock, Flow, Patient, start_flow
from tests.smsflow.test_conversation import converse
from tests.twilio_double import TwilioDouble

CODE = re.compile(r"\b[23456789A-HJ-NP-Z]{6}\b")
API_KEY = "gateway-key-" + "5" * 20


@dataclass
class Pair:
    sms: Flow
    gateway: Flow
    ris: SimRis
    emr: LoopbackPeer
    backend: RestScheduling


@asynccontextmanager
async def beside(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> AsyncIterator[Pair]:
    keys = {
        "phone_hash_key": "hex:" + secrets.token_hex(32),
        "phi_key": "hex:" + secrets.token_hex(32),
    }
    ris = SimRis(default_calendar(clock=clock))
    await ris.start()
    try:
        async with LoopbackPeer(reply_with("AA")) as emr:
            shared = {
                **keys,
                "ris_addr": f"127.0.0.1:{ris.port}",
                "emr_routes": f"*=127.0.0.1:{emr.port}",
            }
            async with start_flow(
                database_url,
                private_tmp("radsched-gw-"),
                twilio,
                clock,
                api_keys=API_KEY,
                **shared,
            ) as gateway:
                rest = {
                    "scheduling_backend": "rest",
                    "scheduling_url": gateway.http + "/api/ris",
                    "scheduling_api_key": API_KEY,
                }
                async with start_flow(
                    database_url, data_dir, twilio, clock, **shared, **rest
                ) as sms:
                    endpoint = EngineEndpoint("scheduling", gateway.http + "/api/ris", API_KEY)
                    client = RestEngineClient(endpoint, tz=ZoneInfo("America/New_York"))
                    backend = RestScheduling(client)
                    try:
                        yield Pair(sms, gateway, ris, emr, backend)
                    finally:
                        await client.aclose()
    finally:
        await ris.aclose()


async def test_the_readme_conversation_over_rest_and_one_siu(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> None:
    async with beside(database_url, data_dir, twilio, clock) as pair:
        patient = Patient()
        sms = pair.sms
        assert (await sms.order("PLBESIDE1", patient)).code is AckCode.AA
        assert "YES" in (await sms.texts(1))[-1].body
        menu = await converse(sms, patient, "Yes")
        assert "1 Downtown Imaging" in menu
        slots = await converse(sms, patient, "1")
        assert "Downtown Imaging" in slots and "2 " in slots
        confirmation = await converse(sms, patient, "2")
        code = CODE.search(confirmation.split("Code", 1)[-1])
        assert code and "Downtown Imaging" in confirmation and SCHEDULING_PHONE in confirmation

        # Booked once, by the gateway over HL7, through its REST facade.
        assert len(pair.ris.calendar.bookings) == 1
        rows = await sms.fetch("SELECT state, source, confirmation_code FROM bookings")
        assert [tuple(r) for r in rows] == [("booked", "rest", code.group(0))]
        conv = await sms.conversation(patient)
        assert conv["state"] == "booked" and conv["phi"] is None

        # The SIU reaches the EMR once (both daemons run an EMR sender; one holds the destination).
        async def delivered() -> bool:
            got = await sms.fetch("SELECT state FROM hl7_outbox")
            return [r["state"] for r in got] == ["delivered"]

        await eventually(delivered, what="the SIU delivered")
        (frame,) = await pair.emr.wait_for_frames(1)  # all received so far: exactly one
        assert_valid_hl7(frame)
        siu = parse_hl7(frame)
        assert (siu.message_type, siu.trigger) == ("SIU", "S12")


async def test_a_gateway_that_went_away_is_the_ris_down_path(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> None:
    async with beside(database_url, data_dir, twilio, clock) as pair:
        patient = Patient()
        sms = pair.sms
        assert (await sms.order("PLBESIDE2", patient)).code is AckCode.AA
        await sms.texts(1)
        await pair.ris.aclose()  # the gateway's RIS goes down: the gateway answers 503
        text = await converse(sms, patient, "Yes")
        # The same as a RIS that went away: the conversation waits for it (issue 13 item 6).
        assert "shortly" in text and SCHEDULING_PHONE not in text
        assert (await sms.conversation(patient))["state"] == "loading_locations"
        assert not pair.ris.calendar.bookings
