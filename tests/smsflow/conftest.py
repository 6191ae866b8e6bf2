"""An in-process daemon on real PostgreSQL and real sockets, its texts going to the Twilio double.

Outside peers only are faked: Twilio (``tests.twilio_double``) and, where a test says so, an
unreachable RIS. The clock is injected (:class:`Clock`) so expiry and quiet hours run without sleeps.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import mllp
from channels import Ack, AckCode, read_ack
from channels import parse as parse_hl7
from mllp.testing import LoopbackPeer
from radsched.daemon import Daemon, running
from radsched.privacy import phone_hash
from radsched.settings import Settings
from radsched.simris import SimRis, default_calendar
from radsched.sms.engine import SmsEngine
from tests.channels.hl7check import assert_valid_hl7
from tests.twilio_double import Message, TwilioDouble

PUBLIC_URL = "https://radsched.example.org"
ORDER_TOKEN = "order-token-" + "7" * 24
PRACTICE = "Lakeside Imaging"
SCHEDULING_PHONE = "(555) 010-0200"
# 2026-06-01 is a Monday; 15:00 UTC is 11:00 in New York, outside quiet hours.
START = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Patient:
    """Synthetic patient data; every value is checked for in the privacy proof."""

    mrn: str = field(default_factory=lambda: "MRN" + secrets.token_hex(4).upper())
    family: str = "QUIGGLEFORTH"
    given: str = "ZEPHYRINA"
    dob: str = "19710423"
    area: str = "212"
    exchange: str = "555"
    line: str = field(default_factory=lambda: f"{secrets.randbelow(9000) + 1000}")

    @property
    def e164(self) -> str:
        return f"+1{self.area}{self.exchange}{self.line}"

    @property
    def xtn23(self) -> str:
        """The 2.3 form: a formatted number in XTN-1, equipment CP."""
        return f"({self.area}){self.exchange}-{self.line}^PRN^CP"

    @property
    def xtn25(self) -> str:
        """The 2.5 form: country/area/local in XTN-5/6/7."""
        return f"^PRN^CP^^1^{self.area}^{self.exchange}{self.line}"


def orm(
    control_id: str,
    order_id: str,
    patient: Patient,
    *,
    modality: str = "CR",
    control: str = "NW",
    phone: str | None = None,
    version: str = "2.3",
    procedure: str = "71045^XR CHEST 2V^CPT",
    language: str = "",
) -> bytes:
    xtn = patient.xtn23 if phone is None else phone
    pid = f"PID|1||{patient.mrn}^^^HOSP^MR||{patient.family}^{patient.given}||{patient.dob}|F|||||{xtn}"
    segments = [
        f"MSH|^~\\&|SYNAPSE|RADIOLOGY|RADSCHED|RADSCHED|20260601100000||ORM^O01|{control_id}|P|{version}",
        pid + (f"||{language}" if language else ""),
        f"ORC|{control}|{order_id}|F{order_id}",
        f"OBR|1|{order_id}|F{order_id}|{procedure}||||||||||||||||||||{modality}",
    ]
    return ("\r".join(segments) + "\r").encode()


@dataclass
class Flow:
    daemon: Daemon
    clock: Clock
    twilio: TwilioDouble

    @property
    def engine(self) -> SmsEngine:
        assert self.daemon.sms_engine is not None
        return self.daemon.sms_engine

    @property
    def http(self) -> str:
        addr = self.daemon.listening["http"]
        return f"http://{addr.host}:{addr.port}"

    async def send_hl7(self, payload: bytes) -> tuple[Ack, bytes]:
        addr = self.daemon.listening["mllp"]
        async with mllp.Client(addr.host, addr.port) as client:
            reply = await client.request(payload, timeout=10)
        assert_valid_hl7(reply)
        return read_ack(parse_hl7(reply)), reply

    async def order(self, order_id: str, patient: Patient, **kw: Any) -> Ack:
        ack, _ = await self.send_hl7(orm("C" + secrets.token_hex(6), order_id, patient, **kw))
        return ack

    async def texts(self, count: int) -> list[Message]:
        """Wait until the double accepted ``count`` texts in total; return them all."""
        return await self.twilio.wait_accepted(count, timeout=10)

    def texts_to(self, patient: Patient) -> list[str]:
        return [m.body for m in self.twilio.accepted if m.to == patient.e164]

    async def reply(self, patient: Patient, body: str) -> None:
        await self.engine.on_inbound_text(
            patient.e164, body, "SM" + secrets.token_hex(16), "test-" + secrets.token_hex(4)
        )
        await self.engine.drain()

    def hash_of(self, patient: Patient) -> str:
        return phone_hash(self.daemon.hash_key, patient.e164)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.daemon.db.transaction("test.read") as conn:
            return list(await conn.fetch(query, *args))

    async def conversation(self, patient: Patient) -> asyncpg.Record:
        rows = await self.fetch(
            "SELECT * FROM sms_conversations WHERE phone_hash = $1 ORDER BY created_at DESC",
            self.hash_of(patient),
        )
        assert rows, "no conversation for this patient"
        return rows[0]

    def counter(self, name: str, **labels: str) -> float:
        value = self.daemon.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


def settings_for(
    database_url: str, data_dir: Path, twilio: TwilioDouble, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "http_listen": "127.0.0.1:0",
        "mllp_listen": "127.0.0.1:0",
        "public_url": PUBLIC_URL,
        "order_tokens": ORDER_TOKEN,
        "phone_hash_key": "hex:" + secrets.token_hex(32),
        "phi_key": "hex:" + secrets.token_hex(32),
        "practice_name": PRACTICE,
        "scheduling_phone": SCHEDULING_PHONE,
        "quiet_hours": "",
        "enabled_modalities": "CR,DX",
        "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token,
        "twilio_from": "+15005550006",
        "twilio_api_url": twilio.url,
        "ris_timeout_s": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioDouble]:
    async with TwilioDouble() as double:
        yield double


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sim(clock: Clock) -> AsyncIterator[SimRis]:
    """A simulated RIS on loopback (``ris_addr``), on the test's clock."""
    async with SimRis(default_calendar(clock=clock)) as started:
        await started.start()
        yield started


@asynccontextmanager
async def start_flow(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock, **overrides: Any
) -> AsyncIterator[Flow]:
    settings = settings_for(database_url, data_dir, twilio, **overrides)
    async with running(settings, clock=clock) as daemon:
        yield Flow(daemon, clock, twilio)


@asynccontextmanager
async def start_flow_with_emr(
    database_url: str,
    data_dir: Path,
    twilio: TwilioDouble,
    clock: Clock,
    sim: SimRis,
    **overrides: Any,
) -> AsyncIterator[tuple[Flow, LoopbackPeer]]:
    """A daemon booking on ``sim`` whose SIU go to an EMR peer (ch10-2.5.1) on loopback."""
    async with (
        LoopbackPeer() as emr,
        start_flow(
            database_url,
            data_dir,
            twilio,
            clock,
            ris_addr=f"127.0.0.1:{sim.port}",
            emr_routes=f"*=127.0.0.1:{emr.port};ch10-2.5.1",
            **overrides,
        ) as started,
    ):
        yield started, emr


@pytest.fixture
async def flow(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> AsyncIterator[Flow]:
    async with start_flow(database_url, data_dir, twilio, clock) as started:
        yield started


__all__ = ["AckCode"]
