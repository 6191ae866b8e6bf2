"""Fixtures for the SMS transport tests: the Twilio double, a sender wired to it, a fake clock.

The only fake of our own code allowed here is ``RecordingEngine``, a stand-in for the SMS engine's
two entry points, used where a test checks the transport's side of the contract in isolation.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from radsched.privacy import PhiBox, phone_hash
from radsched.storage.db import Database
from radsched.storage.sms_outbox import OutboxIds, enqueue_text
from radsched.twilio.providers import SmsProvider, TwilioProvider
from radsched.twilio.sender import OutboxSender, RetryPolicy, SmsMetrics, SmsSenderConfig
from tests.twilio_double import TwilioDouble

START = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
PATIENT = "+12125550123"
SENDER = "+15005550006"
HASH_KEY = secrets.token_bytes(32)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class RecordingEngine:
    """Records the calls the transport makes into the SMS engine; can be told to fail once."""

    inbound: list[tuple[str, str, str, str]] = field(default_factory=list)
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    fail_next: int = 0

    async def on_inbound_text(
        self, from_e164: str, body: str, message_sid: str, correlation_id: str
    ) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("engine failure")
        self.inbound.append((from_e164, body, message_sid, correlation_id))

    async def on_delivery_failure(
        self, phone_hash: str, error_code: int, correlation_id: str
    ) -> None:
        self.failures.append((phone_hash, error_code, correlation_id))


@pytest.fixture
async def double() -> AsyncIterator[TwilioDouble]:
    async with TwilioDouble() as d:
        yield d


@pytest.fixture
def phi() -> PhiBox:
    return PhiBox(secrets.token_bytes(32))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class Rig:
    db: Database
    dsn: str
    phi: PhiBox
    clock: Clock
    double: TwilioDouble
    engine: RecordingEngine
    metrics: SmsMetrics
    registry: CollectorRegistry
    senders: list[OutboxSender] = field(default_factory=list)

    def provider(self, *, timeout: float = 5.0, api_url: str | None = None) -> TwilioProvider:
        return TwilioProvider(
            account_sid=self.double.account_sid,
            auth_token=self.double.auth_token,
            sender=SENDER,
            api_url=api_url or self.double.url,
            timeout=timeout,
        )

    async def sender(
        self,
        provider: SmsProvider | None = None,
        *,
        policy: RetryPolicy | None = None,
        config: SmsSenderConfig | None = None,
    ) -> OutboxSender:
        sender = OutboxSender(
            db=self.db,
            dsn=self.dsn,
            phi=self.phi,
            provider=provider or self.provider(),
            metrics=self.metrics,
            clock=self.clock,
            status_callback_base="https://sched.example.org/sms/status",
            engine=lambda: self.engine,
            policy=policy or RetryPolicy(base_s=1.0, cap_s=4.0, max_attempts=4),
            config=config,
        )
        await sender.start()
        self.senders.append(sender)
        return sender

    async def enqueue(
        self,
        body: str = "Lakeside Imaging: reply YES to schedule.",
        *,
        to: str = PATIENT,
        template_id: str = "consent_request",
        not_after: datetime | None = None,
        conversation_id: uuid.UUID | None = None,
        ids: OutboxIds | None = None,
    ) -> int:
        async with self.db.transaction("test.enqueue") as conn:
            return await enqueue_text(
                conn,
                phi=self.phi,
                to_e164=to,
                body=body,
                template_id=template_id,
                phone_hash=phone_hash(HASH_KEY, to),
                conversation_id=conversation_id or uuid.uuid4(),
                correlation_id="cid-" + secrets.token_hex(4),
                now=self.clock(),
                not_after=not_after,
                ids=ids,
            )

    async def row(self, outbox_id: int) -> dict[str, object]:
        async with self.db.transaction("test.row") as conn:
            record = await conn.fetchrow("SELECT * FROM sms_outbox WHERE id = $1", outbox_id)
        assert record is not None
        return dict(record)

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return value or 0.0


@pytest.fixture
async def rig(
    db: Database, database_url: str, phi: PhiBox, clock: Clock, double: TwilioDouble
) -> AsyncIterator[Rig]:
    registry = CollectorRegistry()
    rig = Rig(
        db, database_url, phi, clock, double, RecordingEngine(), SmsMetrics(registry), registry
    )
    yield rig
    for sender in rig.senders:
        await sender.aclose(5.0)
