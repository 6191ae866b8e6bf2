"""The outbox sender with the real Twilio SDK against the Twilio double: each text at most once.

Retries are driven by the injected clock: a failed attempt is due again only after the test moves
the clock past the backoff and wakes the sender, so nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import pytest

from radsched.privacy import phone_hash
from radsched.twilio.sender import RetryPolicy
from tests.smstwilio.conftest import HASH_KEY, PATIENT, SENDER, Rig
from tests.waiting import eventually

# The SDK itself uses aiohttp's deprecated BasicAuth; nothing of ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def settle(rig: Rig) -> None:
    for sender in rig.senders:
        sender.wake()
    for sender in rig.senders:
        await sender.wait_idle(10)


async def test_enqueued_text_is_delivered_once_with_twilio_fields(rig: Rig) -> None:
    sender = await rig.sender()
    not_after = rig.clock() + timedelta(minutes=30)
    outbox_id = await rig.enqueue("Reply 1 or 2", template_id="slot_menu", not_after=not_after)
    [message] = await rig.double.wait_accepted(1)
    await settle(rig)

    assert message.to == PATIENT and message.from_ == SENDER and message.body == "Reply 1 or 2"
    assert message.status_callback == f"https://sched.example.org/sms/status?outbox={outbox_id}"
    assert message.validity_period == 1800
    row = await rig.row(outbox_id)
    assert row["state"] == "sent" and row["provider_sid"] == message.sid
    assert row["payload"] is None, "sealed number and body are deleted once sent"
    assert row["attempts"] == 1
    assert rig.metric("radsched_sms_sent_total", template="slot_menu") == 1
    assert len(rig.double.requests) == 1
    assert sender.identity


async def test_text_without_not_after_has_no_validity_period(rig: Rig) -> None:
    await rig.sender()
    await rig.enqueue()
    [message] = await rig.double.wait_accepted(1)
    assert message.validity_period is None and "ValidityPeriod" not in message.form


async def test_server_error_once_then_exactly_one_delivery(rig: Rig) -> None:
    sender = await rig.sender()
    rig.double.fail_next(1, 500)
    outbox_id = await rig.enqueue()
    await rig.double.wait_requests(1)
    await settle(rig)
    row = await rig.row(outbox_id)
    assert row["state"] == "pending" and row["error_class"] == "server_error"
    assert row["payload"] is not None
    assert len(rig.double.requests) == 1, "the SDK itself never retries a POST"

    rig.clock.advance(1.0)  # backoff for attempt 1 is at most base_s
    sender.wake()
    await rig.double.wait_accepted(1)
    await settle(rig)
    row = await rig.row(outbox_id)
    assert row["state"] == "sent" and row["attempts"] == 2
    assert len(rig.double.accepted) == 1 and len(rig.double.requests) == 2
    assert (
        rig.metric(
            "radsched_sms_retries_total", template="consent_request", error_class="server_error"
        )
        == 1
    )


async def test_rate_limited_is_retried_with_backoff(rig: Rig) -> None:
    sender = await rig.sender(policy=RetryPolicy(base_s=8, cap_s=60, max_attempts=5))
    rig.double.fail_next(2, 429)
    outbox_id = await rig.enqueue()
    await rig.double.wait_requests(1)
    await settle(rig)
    first = (await rig.row(outbox_id))["next_attempt_at"]
    assert 4 <= (first - rig.clock()).total_seconds() <= 8  # type: ignore[operator]

    rig.clock.advance(8)
    sender.wake()
    await rig.double.wait_requests(2)
    await settle(rig)
    second = (await rig.row(outbox_id))["next_attempt_at"]
    assert 8 <= (second - rig.clock()).total_seconds() <= 16  # type: ignore[operator]

    rig.clock.advance(16)
    sender.wake()
    await rig.double.wait_accepted(1)
    await settle(rig)
    assert (await rig.row(outbox_id))["state"] == "sent"
    assert len(rig.double.accepted) == 1


async def test_a_full_sender_queue_at_twilio_is_retried_not_lost(rig: Rig) -> None:
    """A burst above the sender's rate fills its Twilio queue (400 / 21611): the text waits for the
    queue to drain and goes once, instead of being dead-lettered (bench.reminders' overflow)."""
    sender = await rig.sender(policy=RetryPolicy(base_s=8, cap_s=60, max_attempts=5))
    rig.double.rate, rig.double.queue_s = 1.0, 1.0  # 1 segment/s; the queue holds one second
    first, second = await rig.enqueue(), await rig.enqueue()
    await rig.double.wait_requests(2)
    await settle(rig)
    assert (await rig.row(first))["state"] == "sent"
    refused = await rig.row(second)
    assert (refused["state"], refused["error_class"], refused["error_code"]) == (
        "pending",
        "rate_limited",
        21611,
    )
    rig.double.queue_s = 60.0  # the queue has drained
    rig.clock.advance(8)
    sender.wake()
    await rig.double.wait_accepted(2)
    await settle(rig)
    assert (await rig.row(second))["state"] == "sent"
    assert len(rig.double.accepted) == 2 and rig.double.refused_queue_full == 1


async def test_attempts_are_bounded_then_dead_lettered(rig: Rig) -> None:
    sender = await rig.sender(policy=RetryPolicy(base_s=1, cap_s=1, max_attempts=3))
    rig.double.fail_next(10, 503)
    outbox_id = await rig.enqueue()
    for attempt in range(1, 4):
        await rig.double.wait_requests(attempt)
        await settle(rig)
        rig.clock.advance(2)
        sender.wake()
    await settle(rig)
    row = await rig.row(outbox_id)
    assert row["state"] == "dead" and row["error_class"] == "exhausted" and row["attempts"] == 3
    assert row["payload"] is None, "a dead text's number and body are deleted"
    assert len(rig.double.requests) == 3 and not rig.double.accepted
    assert (
        rig.metric("radsched_sms_dead_total", template="consent_request", error_class="exhausted")
        == 1
    )


async def test_opted_out_recipient_reports_to_engine_and_is_not_retried(rig: Rig) -> None:
    await rig.sender()
    rig.double.refuse(PATIENT, 21610)
    outbox_id = await rig.enqueue()
    await rig.double.wait_requests(1)
    await settle(rig)
    row = await rig.row(outbox_id)
    assert row["state"] == "failed" and row["error_class"] == "opted_out"
    assert row["error_code"] == 21610 and row["payload"] is None
    assert rig.engine.failures == [(phone_hash(HASH_KEY, PATIENT), 21610, row["correlation_id"])]
    rig.clock.advance(3600)
    await settle(rig)
    assert len(rig.double.requests) == 1
    assert (
        rig.metric("radsched_sms_failed_total", template="consent_request", error_class="opted_out")
        == 1
    )


async def test_invalid_number_is_reported(rig: Rig) -> None:
    await rig.sender()
    rig.double.refuse(PATIENT, 21614)
    outbox_id = await rig.enqueue()
    await rig.double.wait_requests(1)
    await settle(rig)
    row = await rig.row(outbox_id)
    assert row["state"] == "failed" and row["error_class"] == "invalid_number"
    assert [code for _, code, _ in rig.engine.failures] == [21614]


async def test_unknown_client_error_is_dead_lettered_without_retry(rig: Rig) -> None:
    await rig.sender()
    rig.double.refuse(PATIENT, 21408)  # "permission to send to this region": not a code we know
    outbox_id = await rig.enqueue()
    await rig.double.wait_requests(1)
    await settle(rig)
    row = await rig.row(outbox_id)
    assert (
        row["state"] == "dead" and row["error_class"] == "rejected" and row["error_code"] == 21408
    )
    assert "21408" in str(row["last_error"]) and PATIENT not in str(row["last_error"])
    rig.clock.advance(3600)
    await settle(rig)
    assert len(rig.double.requests) == 1 and not rig.engine.failures


async def test_text_past_not_after_is_dropped_not_sent_late(rig: Rig) -> None:
    outbox_id = await rig.enqueue(not_after=rig.clock() + timedelta(minutes=5))
    rig.clock.advance(301)
    await rig.sender()
    await settle(rig)
    row = await rig.row(outbox_id)
    assert row["state"] == "dead" and row["error_class"] == "expired" and row["payload"] is None
    assert not rig.double.requests


async def test_retry_that_would_land_after_not_after_is_dropped(rig: Rig) -> None:
    await rig.sender(policy=RetryPolicy(base_s=600, cap_s=600, max_attempts=5))
    rig.double.fail_next(1, 500)
    outbox_id = await rig.enqueue(not_after=rig.clock() + timedelta(minutes=2))
    await rig.double.wait_requests(1)
    await settle(rig)
    row = await rig.row(outbox_id)
    assert row["state"] == "dead" and row["error_class"] == "expired"


async def test_ambiguous_timeout_is_never_resent_and_a_callback_can_prove_it(rig: Rig) -> None:
    await rig.sender(rig.provider(timeout=0.6))
    rig.double.stall()
    outbox_id = await rig.enqueue()
    await rig.double.wait_requests(1)
    await settle(rig)  # the provider times out with the request on the wire
    row = await rig.row(outbox_id)
    assert row["state"] == "failed" and row["error_class"] == "ambiguous"
    rig.double.release()
    [message] = await rig.double.wait_accepted(1)  # Twilio did accept it after all
    rig.clock.advance(3600)
    await settle(rig)
    assert len(rig.double.requests) == 1

    # Twilio's status callback carries ?outbox=<id>: it settles the doubt.
    from radsched.storage import sms_outbox as store

    async with rig.db.transaction("test.status") as conn:
        change = await store.apply_status(
            conn,
            sid=message.sid,
            message_status="delivered",
            error_code=None,
            error_class=None,
            outbox_id=outbox_id,
            now=rig.clock(),
        )
    assert change is not None and change.new_state == "delivered"
    row = await rig.row(outbox_id)
    assert (
        row["state"] == "delivered"
        and row["provider_sid"] == message.sid
        and row["payload"] is None
    )


async def test_connection_refused_before_sending_is_retried(rig: Rig) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    sender = await rig.sender(rig.provider(api_url=f"http://127.0.0.1:{closed_port}"))
    outbox_id = await rig.enqueue()
    sender.wake()
    await settle(rig)
    row = await rig.row(outbox_id)
    assert row["state"] == "pending" and row["error_class"] == "network"


async def test_two_senders_share_the_outbox_and_send_each_text_once(rig: Rig) -> None:
    await rig.sender()
    await rig.sender()
    ids = [await rig.enqueue(f"text {n}") for n in range(40)]
    await rig.double.wait_accepted(40)
    await settle(rig)
    assert sorted(m.body for m in rig.double.accepted) == sorted(f"text {n}" for n in range(40))
    async with rig.db.transaction("test.rows") as conn:
        states = await conn.fetch(
            "SELECT state, claimed_by FROM sms_outbox WHERE id = ANY($1)", ids
        )
    assert {r["state"] for r in states} == {"sent"}
    assert len({r["claimed_by"] for r in states}) == 2, "both senders took a share"


async def test_rows_of_a_vanished_sender_are_marked_ambiguous_not_resent(rig: Rig) -> None:
    outbox_id = await rig.enqueue()
    async with rig.db.transaction("test.orphan") as conn:
        await conn.execute(
            "UPDATE sms_outbox SET state = 'sending', attempts = 1, claimed_by = '1@1', "
            "claimed_at = $2 WHERE id = $1",
            outbox_id,
            rig.clock(),
        )
    await rig.sender()
    await settle(rig)
    row = await rig.row(outbox_id)
    assert row["state"] == "failed" and row["error_class"] == "ambiguous"
    assert not rig.double.requests


async def test_shutdown_lets_an_in_flight_send_finish(rig: Rig) -> None:
    sender = await rig.sender()
    rig.double.stall()
    outbox_id = await rig.enqueue()
    await rig.double.wait_requests(1)
    closing = asyncio.create_task(sender.aclose(10))
    rig.double.release()
    await closing
    rig.senders.remove(sender)
    assert (await rig.row(outbox_id))["state"] == "sent"
    assert len(rig.double.accepted) == 1


async def test_callback_for_a_5xx_text_twilio_did_accept_cancels_the_retry(rig: Rig) -> None:
    """A proxy answered 502 after Twilio had created the message: the callback settles it."""
    from radsched.storage import sms_outbox as store

    sender = await rig.sender()
    rig.double.fail_next(1, 502)
    outbox_id = await rig.enqueue()
    await rig.double.wait_requests(1)
    await settle(rig)
    assert (await rig.row(outbox_id))["state"] == "pending"
    async with rig.db.transaction("test.status") as conn:
        change = await store.apply_status(
            conn,
            sid="SM" + "ab" * 16,
            message_status="sent",
            error_code=None,
            error_class=None,
            outbox_id=outbox_id,
            now=rig.clock(),
        )
    assert change is not None and (change.old_state, change.new_state) == ("pending", "sent")
    rig.clock.advance(3600)
    sender.wake()
    await settle(rig)
    row = await rig.row(outbox_id)
    assert row["state"] == "sent" and row["payload"] is None
    assert len(rig.double.requests) == 1, "the retry never went out"


async def test_sender_survives_losing_its_database_session(rig: Rig) -> None:
    """PostgreSQL drops the sender's own connection (failover, restart, admin): it reconnects,
    takes a new identity, and carries on; nothing is sent twice."""
    from radsched.twilio.sender import SmsSenderConfig

    sender = await rig.sender(config=SmsSenderConfig(listen_retry_s=0.05))
    first = await rig.enqueue("before")
    await rig.double.wait_accepted(1)
    await settle(rig)
    assert (await rig.row(first))["state"] == "sent"
    old_identity = sender.identity
    async with rig.db.transaction("test.kill") as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'radsched-sms-sender'"
        )
    second = await rig.enqueue("after")

    async def sent() -> bool:
        return bool((await rig.row(second))["state"] == "sent")

    await eventually(sent, timeout=10, what="the sender back", every=0.05, between=sender.wake)
    assert sender.identity != old_identity
    assert (await rig.row(first))["state"] == "sent"
    assert [m.body for m in rig.double.accepted] == ["before", "after"]
