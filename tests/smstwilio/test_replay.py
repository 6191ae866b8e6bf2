"""A captured Twilio webhook replayed later, re-split so that its fields differ, does nothing.

Twilio's signature covers names and values concatenated without separators and carries no time,
so a request captured once (a proxy log, a misrouted copy) verifies for as long as the Auth Token
stays the same, in any re-split form. The MessageSid de-duplication forgets after
DUPLICATE_WINDOW_DAYS; the signature itself is remembered for 400 days (issue 11, item 2).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from radsched.privacy import phone_hash
from radsched.retention import policy_from, run_job
from radsched.storage.webhook_signatures import WebhookSignatures
from radsched.twilio.webhooks import CLAIM_STALE_S, EMPTY_TWIML
from tests.smsflow.conftest import Clock, Flow, start_flow
from tests.twilio_double import Message, TwilioDouble, inbound_form, sign

TWILIO_NUMBER = "+15005550006"


def inbound_url(flow: Flow) -> str:
    """The URL Twilio signs: PUBLIC_URL, not the loopback address the test posts to."""
    return flow.daemon.settings.public_url + "/sms/inbound"


async def text(flow: Flow, from_: str, body: str) -> tuple[dict[str, str], str]:
    """The patient texts ``body``; returns the webhook as an eavesdropper would have captured it."""
    form = inbound_form(flow.twilio.account_sid, from_=from_, body=body, to=TWILIO_NUMBER)
    signature = sign(flow.twilio.auth_token, inbound_url(flow), form)
    assert await post(flow, form, signature) == (200, EMPTY_TWIML)
    return form, signature


async def post(
    flow: Flow, form: dict[str, str], signature: str, path: str = "/sms/inbound"
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(flow.http + path, data=form, headers={"X-Twilio-Signature": signature}) as reply,
    ):
        return reply.status, await reply.text()


async def forget_message_sids(flow: Flow, clock: Clock) -> None:
    """Past the MessageSid window, the daily retention job has forgotten the MessageSids."""
    clock.advance(days=flow.daemon.settings.duplicate_window_days + 1)
    policy = policy_from(flow.daemon.settings.duplicate_window_days)
    await run_job(flow.daemon.db, clock(), policy, wait=True, only_if_due=False)
    assert await flow.fetch("SELECT 1 FROM sms_inbound") == []


async def consent(flow: Flow, phone: str) -> str:
    rows = await flow.fetch(
        "SELECT consent_state FROM patient_sms_consents WHERE phone_hash = $1",
        phone_hash(flow.daemon.hash_key, phone),
    )
    return str(rows[0]["consent_state"])


@dataclass
class Opted:
    flow: Flow
    clock: Clock
    phone: str
    confirmation: Message


@pytest.fixture
async def opted_out(
    database_url: str, data_dir: Path, double: TwilioDouble
) -> AsyncIterator[Opted]:
    """A real daemon (injected clock, the Twilio double) and a patient who has texted STOP."""
    clock = Clock()
    phone = f"+1212555{secrets.randbelow(9000) + 1000}"
    async with start_flow(database_url, data_dir, double, clock) as flow:
        await text(flow, phone, "STOP")
        [confirmation] = await flow.texts(1)
        yield Opted(flow, clock, phone, confirmation)


async def test_a_captured_start_replayed_re_split_after_the_sid_window_leaves_the_patient_opted_out(
    opted_out: Opted, double: TwilioDouble
) -> None:
    flow, clock, phone = opted_out.flow, opted_out.clock, opted_out.phone
    captured, signature = await text(flow, phone, "START")
    assert "subscribed again" in (await flow.texts(2))[-1].body
    await text(flow, phone, "STOP")
    await flow.texts(3)
    assert await consent(flow, phone) == "revoked"

    await forget_message_sids(flow, clock)

    # The same signed string, split differently: NumMedia swallows NumSegments.
    replay = dict(captured)
    replay["NumMedia"] += "NumSegments" + replay.pop("NumSegments")
    assert replay != captured
    assert sign(double.auth_token, inbound_url(flow), replay) == signature
    texts_before = await flow.fetch("SELECT id FROM sms_outbox")

    # Answered the way Twilio expects for a duplicate, and nothing happens.
    assert await post(flow, replay, signature) == (200, EMPTY_TWIML)
    assert await consent(flow, phone) == "revoked"
    assert await flow.fetch("SELECT id FROM sms_outbox") == texts_before
    assert flow.counter("radsched_sms_webhooks_total", endpoint="inbound", outcome="replayed") == 1
    # And again verbatim, now that the replay is remembered under its MessageSid too.
    assert await post(flow, captured, signature) == (200, EMPTY_TWIML)
    assert await consent(flow, phone) == "revoked"
    assert flow.counter("radsched_sms_webhooks_total", endpoint="inbound", outcome="duplicate") == 1


async def test_a_status_callback_replayed_after_the_sid_window_is_ignored(
    opted_out: Opted, double: TwilioDouble
) -> None:
    # Any status replayed alike: an "undelivered, 21610" one would opt a re-subscribed patient out.
    flow, clock, confirmation = opted_out.flow, opted_out.clock, opted_out.confirmation
    assert confirmation.status_callback is not None
    form = {
        "AccountSid": double.account_sid,
        "MessageSid": confirmation.sid,
        "MessageStatus": "delivered",
        "SmsSid": confirmation.sid,
    }
    signature = sign(double.auth_token, confirmation.status_callback, form)
    path = confirmation.status_callback.removeprefix(flow.daemon.settings.public_url)
    for _ in range(2):
        await forget_message_sids(flow, clock)
        assert await post(flow, form, signature, path) == (200, EMPTY_TWIML)
    assert flow.counter("radsched_sms_webhooks_total", endpoint="status", outcome="accepted") == 1
    assert flow.counter("radsched_sms_webhooks_total", endpoint="status", outcome="replayed") == 1


async def test_a_retry_after_the_daemon_died_mid_text_is_still_processed(
    opted_out: Opted,
) -> None:
    # The first attempt claimed the MessageSid and the signature, then the daemon died before the
    # engine's transition: Twilio's retry, a minute later, must not be taken for a replay.
    flow, clock, phone = opted_out.flow, opted_out.clock, opted_out.phone
    form = inbound_form(flow.twilio.account_sid, from_=phone, body="START", to=TWILIO_NUMBER)
    signature = sign(flow.twilio.auth_token, inbound_url(flow), form)
    died_at = clock() - timedelta(seconds=CLAIM_STALE_S + 1)
    async with flow.daemon.db.transaction("test.died") as conn:
        await conn.execute(
            "INSERT INTO sms_inbound (message_sid, event, received_at, claimed_at, correlation_id)"
            " VALUES ($1, 'inbound', $2, $2, $1)",
            form["MessageSid"],
            died_at,
        )
        assert await WebhookSignatures().claim(conn, signature, died_at)
    assert await post(flow, form, signature) == (200, EMPTY_TWIML)
    assert await consent(flow, phone) == "granted"
    assert flow.counter("radsched_sms_webhooks_total", endpoint="inbound", outcome="accepted") == 2
