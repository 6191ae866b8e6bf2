"""A change notification never overtakes the S12 it follows: not while the EMR is down, not across a
restart of the daemon, and not when the S12 is dead-lettered (the S15 is held with it; retrying the S12
releases both, in order)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from channels import parse_siu
from mllp.testing import LoopbackPeer
from radsched.commands.outbox import retry_row
from radsched.simris import SimRis, default_calendar
from tests.emr.helpers import eventually, reply_with
from tests.lifecycle.test_e2e import World, world


async def _book_and_cancel(w: World, order_id: str) -> str:
    slot = (await w.open_slots(1))[0]
    appointment = await w.book(order_id, slot)
    status, body = await w.call(
        "POST", "/api/ris/cancel-appointment", json={"appointment_id": appointment["id"]}
    )
    assert status == 200, body
    return str(appointment["id"])


async def _rows(w: World, appointment_id: str) -> list[tuple[str, str, str]]:
    async with w.daemon.db.transaction("test.outbox") as conn:
        rows = await conn.fetch(
            "SELECT message_type, state, coalesce(last_error, '') AS e FROM hl7_outbox"
            " WHERE appointment_id = $1 ORDER BY id",
            appointment_id,
        )
    return [(r["message_type"], r["state"], r["e"]) for r in rows]


async def test_dead_lettered_s12_holds_the_s15_until_it_is_retried(
    data_dir: Path, database_url: str
) -> None:
    async with world(data_dir, database_url, "ch10-2.5.1", emr_max_rejections=1) as w:
        w.emr.reply = reply_with("AE")  # the EMR refuses the S12 for good
        appointment_id = await _book_and_cancel(w, "PLC9101")

        async def held() -> bool:
            rows = await _rows(w, appointment_id)
            return [(t, s) for t, s, _ in rows] == [("SIU^S12", "dead"), ("SIU^S15", "dead")]

        await eventually(held, what="S12 dead-lettered and the S15 held with it")
        rows = await _rows(w, appointment_id)
        assert rows[1][2].startswith("held: follows dead-lettered ")
        assert [parse_siu(f).trigger for f in w.emr.received] == ["S12"]  # never the S15 alone

        w.emr.reply = reply_with("AA")  # the EMR's mapping is fixed; the operator retries the S12
        async with w.daemon.db.transaction("test.s12") as conn:
            s12 = await conn.fetchval(
                "SELECT id FROM hl7_outbox WHERE appointment_id = $1 AND message_type = 'SIU^S12'",
                appointment_id,
            )
        await retry_row(w.daemon.settings, s12)
        frames = await w.emr.wait_for_frames(3)
        assert [parse_siu(f).trigger for f in frames] == ["S12", "S12", "S15"]


async def test_s15_waits_behind_the_s12_across_a_restart(data_dir: Path, database_url: str) -> None:
    sim = SimRis(default_calendar(clock=lambda: datetime.now(UTC)))
    await sim.start()
    try:
        async with LoopbackPeer(reply=lambda _payload: None) as emr:  # the EMR never answers yet
            async with world(
                data_dir,
                database_url,
                "qie-2.3",
                sim=sim,
                emr=emr,
                emr_ack_timeout_s=0.2,
            ) as w:
                appointment_id = await _book_and_cancel(w, "PLC9102")
                assert [t for t, _s, _e in await _rows(w, appointment_id)] == [
                    "SIU^S12",
                    "SIU^S15",
                ]
                await emr.wait_for_frames(1)
            emr.received.clear()
            emr.reply = reply_with("AA")
            async with world(data_dir, database_url, "qie-2.3", sim=sim, emr=emr) as w:
                frames = await emr.wait_for_frames(2)
                triggers = [parse_siu(f).trigger for f in frames]
                # At-least-once: the S12 may repeat (same MSH-10), but the S15 comes after it.
                assert triggers[0] == "S12" and "S15" in triggers
                assert triggers.index("S15") > 0
                assert w.daemon.lifecycle is not None
    finally:
        await sim.aclose()
