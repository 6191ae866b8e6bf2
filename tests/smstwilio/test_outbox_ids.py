"""Outbox row ids reserved a block at a time: unique across daemons, openable, sent in queue order."""

from __future__ import annotations

import uuid

from radsched.storage.sms_outbox import DedicatedConnection, OutboxIds, claim_due, payload_aad
from tests.smstwilio.conftest import Rig


async def _last_value(rig: Rig) -> int:
    async with rig.db.transaction("test.seq") as conn:
        return int(await conn.fetchval("SELECT last_value FROM sms_outbox_id_seq"))


async def test_one_sequence_round_trip_serves_a_block_of_texts(rig: Rig) -> None:
    await rig.enqueue()  # a text queued the old way, one id from the sequence
    before = await _last_value(rig)
    ids = OutboxIds(block=8)
    queued = [await rig.enqueue(f"text {n}", ids=ids) for n in range(5)]
    # One reservation of 8 ids served all five texts, in order.
    assert await _last_value(rig) == before + 8
    assert queued == list(range(before + 1, before + 6))
    # The block runs out, and the next text reserves the next block.
    queued += [await rig.enqueue(f"text {n}", ids=ids) for n in range(5, 9)]
    assert await _last_value(rig) == before + 16
    assert len(set(queued)) == 9


async def test_two_daemons_texts_keep_the_order_they_were_queued_in(rig: Rig) -> None:
    # Two daemons on one database each hold their own block. One conversation's steps run on
    # either in turn (serialised by its lock), so the later text can carry the smaller id.
    first, second = OutboxIds(), OutboxIds()
    conversation = uuid.uuid4()
    queued = []
    for n, ids in enumerate((first, second, first, second)):
        queued.append(await rig.enqueue(f"step {n}", conversation_id=conversation, ids=ids))
        rig.clock.advance(1)
    assert len(set(queued)) == 4
    assert queued[2] < queued[1], "the blocks should interleave for this test to mean anything"

    session = DedicatedConnection(rig.dsn, name="test-ids")
    conn = await session.open()
    try:
        claimed = await claim_due(conn, now=rig.clock(), limit=16, claimed_by="test@1")
    finally:
        await session.close()
    # The sender starts the texts in this order: the order they were queued in, not by id.
    assert [t.id for t in claimed] == queued
    # Each payload opens under its own row id (the AAD any sender, old or new, expects).
    bodies = [
        rig.phi.open(bytes(t.payload), aad=payload_aad(t.id))["body"]
        for t in claimed
        if t.payload is not None
    ]
    assert bodies == [f"step {n}" for n in range(4)]
