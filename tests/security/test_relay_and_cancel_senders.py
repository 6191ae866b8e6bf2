"""Who may relay and who may cancel (issue 11 item 4), through the real daemon.

The review's finding: any MLLP peer could send an SIU^S12/S15 that was ACKed AA and forwarded to the
EMR, or an ORM with ORC-1 = CA that cancelled an order it never sent. Now RELAY_SENDERS says who may
relay (default ``ris``: the RIS's host, this host when RIS_ADDR is unset, as here), a cancel is
honoured only from the order's sender (MSH-3^MSH-4), and both refusals are AR with a reason, counted
in ``radsched_hl7_refused_total``. 127.0.0.0/8 is loopback on Linux, so 127.0.0.2 plays another host.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from channels import Ack, AckCode, parse, read_ack
from mllp import encode_frame
from radsched.emr.relay import relay_senders
from radsched.errors import ConfigError
from radsched.settings import RelaySenders, load_settings
from tests.channels.hl7check import assert_valid_hl7
from tests.security.conftest import Secured, SecuredFactory
from tests.waiting import eventually

ELSEWHERE = "127.0.0.2"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def fixture(name: str) -> bytes:
    raw = (FIXTURES / name).read_bytes()
    return raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")


S12 = fixture("siu/SIU_S12.relay-from-ris.2.3.hl7")  # from SYNAPSERIS^RADCO, MSH-10 RIS000200
ORDER = fixture("orders/ORM_O01.NW.2.3.hl7")  # SYNAPSERIS^RADCO, order PLC100045 (CT)
CANCEL = fixture("orders/ORM_O01.CA-cancel.2.3.hl7")  # the same sender cancelling PLC100045


def from_sender(payload: bytes, sender: bytes) -> bytes:
    """``payload`` as another interface would send it: MSH-3^MSH-4 replaced, nothing else."""
    assert payload.startswith(b"MSH|^~\\&|SYNAPSERIS|RADCO|")
    return payload.replace(b"SYNAPSERIS|RADCO|", sender.replace(b"^", b"|") + b"|", 1)


async def exchange(s: Secured, payload: bytes, source: str = "127.0.0.1") -> Ack:
    host, port = s.mllp
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    try:
        writer.write(encode_frame(payload))
        async with asyncio.timeout(10):
            frame = (await reader.readuntil(b"\x1c\r"))[1:-2]
    finally:
        writer.close()
    assert_valid_hl7(frame)
    return read_ack(parse(frame))


def refused(s: Secured, reason: str) -> float:
    value = s.daemon.metrics.registry.get_sample_value(
        "radsched_hl7_refused_total", {"reason": reason}
    )
    return value or 0.0


def sink_triggers(s: Secured) -> list[str]:
    assert s.daemon.emr is not None and s.daemon.emr.sink is not None
    return [r.trigger for r in s.daemon.emr.sink.received]


def sink_has(s: Secured, triggers: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return sink_triggers(s) == triggers

    return check


async def outbox_rows(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM hl7_outbox"))
    finally:
        await conn.close()


async def test_an_siu_from_another_host_is_refused_and_not_forwarded(
    secured: SecuredFactory, database_url: str
) -> None:
    async with secured() as s:  # RELAY_SENDERS unset = ris; RIS_ADDR unset = this host only
        ack = await exchange(s, S12, ELSEWHERE)
        # Before: AA, and the S12 went to the EMR.
        assert ack.code is AckCode.AR and "RELAY_SENDERS" in ack.text
        assert ack.control_id == "RIS000200"
        again = await exchange(s, S12, ELSEWHERE)  # a retransmission is refused the same way
        assert (again.code, again.text) == (ack.code, ack.text)
        assert refused(s, "relay_sender") == 2
        assert await outbox_rows(database_url) == 0 and sink_triggers(s) == []

        # The RIS itself (here: this host) sends the same message: nothing was recorded for the
        # refusal, so it is relayed now rather than answered with the stored AR.
        assert (await exchange(s, S12)).code is AckCode.AA
        await eventually(sink_has(s, ["S12"]), what="the S12 at the EMR sink")


async def test_the_default_follows_ris_addr(secured: SecuredFactory) -> None:
    # The RIS at 127.0.0.3 (nothing needs to listen there for this): its host may relay, this one not.
    async with secured(ris_addr="127.0.0.3:9") as s:
        assert (await exchange(s, S12)).code is AckCode.AR
        assert (await exchange(s, S12, "127.0.0.3")).code is AckCode.AA


async def test_relay_senders_by_msh3_msh4_from_any_address(
    secured: SecuredFactory, database_url: str
) -> None:
    async with secured(relay_senders="SYNAPSERIS^RADCO") as s:
        assert (await exchange(s, S12, ELSEWHERE)).code is AckCode.AA
        other = from_sender(S12, b"OTHERRIS^RADCO")
        ack = await exchange(s, other, ELSEWHERE)
        assert ack.code is AckCode.AR and "RELAY_SENDERS" in ack.text
        assert refused(s, "relay_sender") == 1
        await eventually(sink_has(s, ["S12"]), what="only the listed sender's S12")
        assert await outbox_rows(database_url) == 1


async def test_relay_senders_with_an_address_and_none(secured: SecuredFactory) -> None:
    async with secured(relay_senders=f"SYNAPSERIS^*@{ELSEWHERE}") as s:
        assert (await exchange(s, S12)).code is AckCode.AR  # listed sender, wrong address
        assert (await exchange(s, S12, ELSEWHERE)).code is AckCode.AA
    async with secured(relay_senders="none") as s:
        assert (await exchange(s, from_sender(S12, b"SYNAPSERIS^X"))).code is AckCode.AR
        assert refused(s, "relay_sender") == 1 and sink_triggers(s) == []


async def order_state(database_url: str) -> tuple[str, str]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT o.state AS order_state, c.state AS conversation_state"
            " FROM orders o JOIN sms_conversations c ON c.order_key = o.order_key"
        )
    finally:
        await conn.close()
    assert row is not None
    return row["order_state"], row["conversation_state"]


async def test_a_cancel_is_honoured_only_from_the_sender_of_the_order(
    secured: SecuredFactory, database_url: str
) -> None:
    async with secured(enabled_modalities="CT") as s:
        assert (await exchange(s, ORDER)).code is AckCode.AA
        await s.twilio.wait_accepted(1)  # the consent request
        assert await order_state(database_url) == ("texting", "awaiting_consent")

        forged = await exchange(s, from_sender(CANCEL, b"EVIL^LAB"))
        # Before: AA, and the patient's conversation was cancelled.
        assert forged.code is AckCode.AR and "sender of the order" in forged.text
        assert refused(s, "cancel_sender") == 1
        assert await order_state(database_url) == ("texting", "awaiting_consent")

        assert (await exchange(s, CANCEL)).code is AckCode.AA  # the RIS that sent the order
        assert await order_state(database_url) == ("cancelled", "cancelled")
        assert refused(s, "cancel_sender") == 1
        assert len(s.twilio.requests) == 1  # no text about either cancel


async def test_relay_open_to_any_sender_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="radsched.emr.relay"):
        await relay_senders(RelaySenders.parse("*"), None, exposed=True)
    assert "any sender" in caplog.text and "RELAY_SENDERS" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="radsched.emr.relay"):
        policy = await relay_senders(RelaySenders.parse("ris"), None, exposed=False)
    assert caplog.text == "" and policy.allows("ANY", "ONE", "127.0.0.1")
    assert not policy.allows("ANY", "ONE", ELSEWHERE)


@pytest.mark.parametrize(
    "text", ["", "SYNAPSE", "SYNAPSE^", "^FAC", "A^B^C", "A^B@not-an-address", "none,A^B"]
)
def test_a_relay_senders_entry_that_cannot_be_read_stops_start_up(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADSCHED_RELAY_SENDERS", text)
    with pytest.raises(ConfigError, match="^RADSCHED_RELAY_SENDERS: "):
        load_settings()
