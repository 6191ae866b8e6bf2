"""Two daemons, the REST contract both ways: an SMS engine whose RIS is a radsched gateway over REST.

Daemon A holds the conversation; daemon B is the gateway (REST facade → HL7 → simulated RIS) with the
EMR outbox (→ an EMR on loopback). They share one database and its keys, as two daemons with different
roles do. The patient's README conversation must complete over REST, the booking must be made once on
the RIS (by B, over HL7), and the SIU must reach the EMR once.

A runs ``ROLES=sms`` with ``SCHEDULING_BACKEND=rest`` pointed at B's facade; B runs
``ROLES=gateway,emr``. Each starts only its own parts: A has no RIS client, no REST facade and no EMR
sender; B has no order intake, no conversations and no Twilio.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from channels import AckCode
from channels import parse as parse_hl7
from mllp.testing import LoopbackPeer
from radsched.errors import ConfigError
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
            shared = {**keys, "emr_routes": f"*=127.0.0.1:{emr.port}"}
            async with start_flow(
                database_url,
                private_tmp("radsched-gw-"),
                twilio,
                clock,
                api_keys=API_KEY,
                roles="gateway,emr",
                ris_addr=f"127.0.0.1:{ris.port}",
                **shared,
            ) as gateway:
                rest = {
                    "scheduling_backend": "rest",
                    "scheduling_url": gateway.http + "/api/ris",
                    "scheduling_api_key": API_KEY,
                }
                async with start_flow(
                    database_url, data_dir, twilio, clock, roles="sms", **shared, **rest
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

        # The SIU reaches the EMR once: queued by the gateway with the booking, sent by its emr role.
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


async def _get(url: str, **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body


async def test_each_daemon_runs_only_its_roles(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> None:
    async with beside(database_url, data_dir, twilio, clock) as pair:
        sms, gateway = pair.sms.daemon, pair.gateway.daemon
        # sms (no RIS_ADDR): intake, conversations, an MLLP listener; no RIS client, facade, sim-ris.
        assert sms.sms_engine is not None and sms.sms_outbox is not None
        assert sms.scheduling is None and sms.lifecycle is None and "sim-ris" not in sms.listening
        assert sms.emr.senders == {}
        # gateway,emr: the facade, the RIS client and the EMR sender; no conversations, no Twilio.
        assert gateway.sms_engine is None and gateway.sms_outbox is None
        assert gateway.scheduling is not None and gateway.lifecycle is not None
        assert gateway.emr.senders and "mllp" in gateway.listening  # the relay listener
        locations = "/api/ris/locations?modality=CT"
        assert (await _get(pair.sms.http + locations, **{"X-API-Key": API_KEY}))[0] == 404
        assert (await _get(pair.gateway.http + locations, **{"X-API-Key": API_KEY}))[0] == 200
        for flow, roles in ((pair.sms, ["sms"]), (pair.gateway, ["gateway", "emr"])):
            status, ready = await _get(flow.http + "/readyz")
            assert status == 200 and ready["roles"] == roles
            registry = flow.daemon.metrics.registry
            running = {
                r: registry.get_sample_value("radsched_role", {"role": r})
                for r in ("gateway", "sms", "emr")
            }
            assert running == {r: (1.0 if r in roles else 0.0) for r in running}
        # An order sent to the gateway's listener is refused, not silently dropped: no sms role there.
        ack = await pair.gateway.order("PLBESIDE3", Patient())
        assert ack.code is AckCode.AR and "unsupported message type" in ack.text


async def test_a_gateway_only_daemon_needs_no_sms_settings(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> None:
    broken_sms = {"twilio_from": ""}  # Twilio half set up: the sms role refuses to start
    async with start_flow(
        database_url, data_dir, twilio, clock, roles="gateway", **broken_sms
    ) as gateway:
        assert gateway.daemon.sms_engine is None and "mllp" not in gateway.daemon.listening
    with pytest.raises(ConfigError, match="TWILIO_FROM"):
        async with start_flow(database_url, data_dir, twilio, clock, **broken_sms):
            pass
