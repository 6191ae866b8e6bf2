"""Issue 13 item 5: a cancelled slot is offered to the waitlist, one patient at a time.

Through a real daemon, the simulated RIS on loopback and the Twilio double, on the injected clock.
``WAITLIST_MIN_DAYS=0`` because the simulated calendar's first open slots are days, not weeks, away.
Patients book with ``book_by_text`` (the 2nd open slot), so each later patient's appointment is later
than the earlier ones'.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from radsched.report import build_report
from radsched.retention import RetentionPolicy, run_job
from radsched.simris import SimRis
from radsched.sms.waitlist import Waitlist
from tests.smsflow.conftest import Clock, Flow, Patient, start_flow
from tests.smsflow.test_conversation import book_by_text, converse
from tests.twilio_double import TwilioDouble
from tests.waiting import eventually


@pytest.fixture
async def flow(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock, sim: SimRis
) -> AsyncIterator[Flow]:
    async with start_flow(
        database_url,
        data_dir,
        twilio,
        clock,
        ris_addr=f"127.0.0.1:{sim.port}",
        waitlist_min_days=0,
        waitlist_hold_min=10,  # the first open slots are 15-45 minutes away
    ) as started:
        listener = started.daemon.listening["mllp"]
        sim.notify = (listener.host, listener.port)  # staff actions at the RIS send their SIU here
        yield started


def _waitlist(flow: Flow) -> Waitlist:
    waitlist = flow.engine.waitlist
    assert waitlist is not None
    return waitlist


async def _appointment(flow: Flow, patient: Patient) -> dict[str, Any]:
    [row] = await flow.fetch(
        "SELECT appointment_id, slot_id, start_at, confirmation_code FROM appointments"
        " WHERE phone_hash = $1",
        flow.hash_of(patient),
    )
    return dict(row)


async def _join(flow: Flow, patient: Patient) -> None:
    confirmation = await book_by_text(flow, patient)
    assert "Reply W for a text if an earlier time opens" in confirmation, confirmation
    joined = await converse(flow, patient, "W")
    assert "earlier time opens" in joined and "W again" in joined, joined


_JOINED = 5  # consent request, location menu, slot menu, confirmation, "we'll text you"


async def _offers(flow: Flow) -> list[tuple[str, str, str]]:
    rows = await flow.fetch(
        "SELECT o.phone_hash, o.slot_id, o.state FROM waitlist_offers o ORDER BY o.id"
    )
    return [(r["phone_hash"], r["slot_id"], r["state"]) for r in rows]


async def _text_to(flow: Flow, patient: Patient, count: int) -> str:
    """Wait for the patient's ``count``-th text; return it."""

    async def arrived() -> bool:
        return len(flow.texts_to(patient)) >= count

    await eventually(arrived, what=f"text {count} to the patient")
    return flow.texts_to(patient)[count - 1]


async def _two_waiting(flow: Flow) -> tuple[Patient, Patient, dict[str, Any]]:
    """A first patient books; two more book later slots and join the waitlist, in that order.
    Returns them and the first patient's appointment (the slot a cancel frees)."""
    first, second, third = Patient(), Patient(), Patient()
    await book_by_text(flow, first)
    await _join(flow, second)
    await _join(flow, third)
    return second, third, await _appointment(flow, first)


async def _cancel(flow: Flow, appointment: dict[str, Any]) -> None:
    assert flow.daemon.lifecycle is not None
    await flow.daemon.lifecycle.cancel(str(appointment["appointment_id"]), origin="cli")


async def test_a_cancel_offers_the_slot_in_order_no_passes_it_on_yes_moves(
    flow: Flow, sim: SimRis
) -> None:
    second, third, freed = await _two_waiting(flow)
    seen_second = len(flow.texts_to(second))
    seen_third = len(flow.texts_to(third))

    await _cancel(flow, freed)

    offer = await _text_to(flow, second, seen_second + 1)
    assert offer.startswith("An earlier time opened for your X-ray:") and "YES" in offer, offer
    assert len(flow.texts_to(third)) == seen_third  # one patient at a time
    await flow.reply(second, "no")
    kept = await _text_to(flow, second, seen_second + 2)
    assert kept.startswith("OK, your X-ray stays on"), kept
    offer = await _text_to(flow, third, seen_third + 1)
    assert offer.startswith("An earlier time opened"), offer

    before = await _appointment(flow, third)
    moved = await converse(flow, third, "YES")
    assert moved.startswith("Your X-ray was moved to"), moved
    after = await _appointment(flow, third)
    assert after["slot_id"] == freed["slot_id"] and after["start_at"] == freed["start_at"]
    code = re.search(r"New code (\S+)\.", moved)
    assert code and code.group(1) == after["confirmation_code"] != before["confirmation_code"]
    assert len(sim.frames_of("SRM^S02")) == 1
    h2, h3 = flow.hash_of(second), flow.hash_of(third)
    slot = str(freed["slot_id"])
    assert await _offers(flow) == [(h2, slot, "declined"), (h3, slot, "taken")]
    entries = await flow.fetch("SELECT phone_hash, state FROM waitlist_entries ORDER BY id")
    assert [(r["phone_hash"], r["state"]) for r in entries] == [(h2, "waiting"), (h3, "filled")]
    counted = {
        event: flow.counter("radsched_waitlist_total", event=event)
        for event in ("joined", "offered", "declined", "accepting", "taken", "expired")
    }
    assert counted == {
        "joined": 2,
        "offered": 2,
        "declined": 1,
        "accepting": 1,
        "taken": 1,
        "expired": 0,
    }
    # A YES with no live offer is a plain reply again (the closed conversation's text), no move.
    assert "closed" in await converse(flow, third, "yes")
    assert len(sim.frames_of("SRM^S02")) == 1
    # The report counts them per modality, from the audit log (issue 13 item 7).
    async with flow.daemon.db.transaction("test.report") as conn:
        reported = await build_report(conn, datetime(2000, 1, 1, tzinfo=UTC))
    totals = [
        (r.waitlist_joins, r.waitlist_offers, r.waitlist_fills)
        for r in reported
        if r.waitlist_joins
    ]
    assert totals == [(2, 2, 1)]


async def test_a_hold_that_runs_out_moves_to_the_next_patient(flow: Flow, clock: Clock) -> None:
    second, third, freed = await _two_waiting(flow)
    seen_third = len(flow.texts_to(third))
    await _cancel(flow, freed)
    await _text_to(flow, second, _JOINED + 1)  # the offer

    clock.advance(minutes=9)
    assert await _waitlist(flow).sweep() == 0  # still held for the second patient
    clock.advance(minutes=2)
    _waitlist(flow).wake()
    offer = await _text_to(flow, third, seen_third + 1)
    assert offer.startswith("An earlier time opened"), offer
    states = [s for _, _, s in await _offers(flow)]
    assert states == ["expired", "offered"]
    # The second patient's late YES takes nothing (their offer is gone; the slot is the third's).
    assert "closed" in await converse(flow, second, "YES")
    assert [s for _, _, s in await _offers(flow)] == ["expired", "offered"]


async def test_a_refused_move_says_taken_and_the_slot_is_not_offered_again(
    flow: Flow, sim: SimRis
) -> None:
    second, third, freed = await _two_waiting(flow)
    seen_third = len(flow.texts_to(third))
    await _cancel(flow, freed)
    await _text_to(flow, second, _JOINED + 1)  # the offer
    kept = await _appointment(flow, second)

    sim.set_faults(refuse_changes=True)  # the RIS has the last word: 409
    gone = await converse(flow, second, "yes")
    assert gone.startswith("Sorry, that time was just taken."), gone
    assert await _appointment(flow, second) == kept
    assert [s for _, _, s in await _offers(flow)] == ["unavailable"]
    assert len(flow.texts_to(third)) == seen_third  # the slot is not offered to anyone else
    [entry] = await flow.fetch(
        "SELECT state FROM waitlist_entries WHERE phone_hash = $1", flow.hash_of(second)
    )
    assert entry["state"] == "waiting"  # still on the list for the next slot


async def test_w_again_and_stop_leave_the_waitlist(flow: Flow) -> None:
    second, third, freed = await _two_waiting(flow)
    left = await converse(flow, second, "W")
    assert "no more texts about earlier times" in left, left
    await flow.reply(third, "STOP")
    assert "no more texts" in await _text_to(flow, third, _JOINED + 1)
    states = await flow.fetch("SELECT state FROM waitlist_entries ORDER BY id")
    assert [r["state"] for r in states] == ["left", "left"]
    sent = len(flow.twilio.accepted)
    await _cancel(flow, freed)
    assert await _offers(flow) == []
    assert len(flow.twilio.accepted) == sent


async def test_two_cancels_and_yes_at_once_never_give_one_slot_to_two_patients(
    flow: Flow, sim: SimRis
) -> None:
    early1, early2, second, third = Patient(), Patient(), Patient(), Patient()
    await book_by_text(flow, early1)
    await book_by_text(flow, early2)
    await _join(flow, second)
    await _join(flow, third)
    freed = [await _appointment(flow, p) for p in (early1, early2)]
    lifecycle = flow.daemon.lifecycle
    assert lifecycle is not None
    await asyncio.gather(*(lifecycle.cancel(str(f["appointment_id"]), origin="cli") for f in freed))
    offers = await _offers(flow)
    assert sorted(h for h, _, _ in offers) == sorted([flow.hash_of(second), flow.hash_of(third)])
    assert len({s for _, s, _ in offers}) == 2  # one patient per slot, one slot per patient
    await _text_to(flow, second, _JOINED + 1)
    await _text_to(flow, third, _JOINED + 1)

    # Everyone says YES at once, the third patient twice.
    await asyncio.gather(
        flow.reply(second, "YES"), flow.reply(third, "YES"), flow.reply(third, "yes")
    )
    await flow.engine.drain()
    rows = await flow.fetch(
        "SELECT slot_id FROM appointments WHERE phone_hash = ANY($1::text[])",
        [flow.hash_of(second), flow.hash_of(third)],
    )
    slots = sorted(r["slot_id"] for r in rows)
    assert slots == sorted(str(f["slot_id"]) for f in freed)
    assert len(sim.frames_of("SRM^S02")) == 2
    assert sorted(s for _, _, s in await _offers(flow)) == ["taken", "taken"]


async def test_a_cancel_made_at_the_ris_offers_the_slot_too(flow: Flow, sim: SimRis) -> None:
    second, _third, freed = await _two_waiting(flow)
    assert (await sim.staff_cancel(str(freed["appointment_id"])))["ack"] == "AA"  # SIU^S15 to us
    offer = await _text_to(flow, second, _JOINED + 1)
    assert offer.startswith("An earlier time opened"), offer
    moved = await converse(flow, second, "yes")
    assert moved.startswith("Your X-ray was moved to"), moved
    assert (await _appointment(flow, second))["slot_id"] == freed["slot_id"]
    assert len(sim.frames_of("SRM^S02")) == 1


async def test_retention_deletes_the_waitlist_with_the_appointments_identifiers(
    flow: Flow,
) -> None:
    second, third, freed = await _two_waiting(flow)
    await _cancel(flow, freed)
    await _text_to(flow, second, _JOINED + 1)
    last = max([(await _appointment(flow, p))["start_at"] for p in (second, third)])
    now = last + timedelta(days=1, minutes=1)
    report = await run_job(flow.daemon.db, now, RetentionPolicy(), wait=True, only_if_due=False)
    assert report.removed["waitlist rows"] == 2
    assert await flow.fetch("SELECT 1 FROM waitlist_entries") == []
    assert await flow.fetch("SELECT 1 FROM waitlist_offers") == []


async def test_stop_with_a_live_offer_passes_the_slot_to_the_next_patient(flow: Flow) -> None:
    second, third, freed = await _two_waiting(flow)
    await _cancel(flow, freed)
    await _text_to(flow, second, _JOINED + 1)  # the offer
    await flow.reply(second, "STOP")
    offer = await _text_to(flow, third, _JOINED + 1)
    assert offer.startswith("An earlier time opened"), offer
    assert [s for _, _, s in await _offers(flow)] == ["declined", "offered"]
    # Nothing more to the phone that opted out but the one permitted confirmation.
    assert "no more texts" in await _text_to(flow, second, _JOINED + 2)


async def test_a_yes_interrupted_by_a_restart_is_finished_once(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock, sim: SimRis
) -> None:
    keys = {"phone_hash_key": secrets.token_hex(32), "phi_key": secrets.token_hex(32)}
    common: dict[str, Any] = {
        "ris_addr": f"127.0.0.1:{sim.port}",
        "shutdown_grace_s": 0.2,
        "waitlist_min_days": 0,
        "waitlist_hold_min": 10,
        **keys,
    }
    async with start_flow(database_url, data_dir, twilio, clock, **common) as flow:
        second, _third, freed = await _two_waiting(flow)
        await _cancel(flow, freed)
        await _text_to(flow, second, _JOINED + 1)
        # The RIS moves the appointment but its answer is held; the daemon stops before it arrives.
        sim.set_faults(stall=True)
        await flow.engine.on_inbound_text(second.e164, "YES", "SM" + secrets.token_hex(16), "t")
        assert [s for _, _, s in await _offers(flow)] == ["accepting"]
    sim.set_faults(stall=False)
    async with start_flow(database_url, data_dir, twilio, clock, **common) as flow:
        moved = await _text_to(flow, second, _JOINED + 2)
        assert moved.startswith("Your X-ray was moved to"), moved
        assert (await _appointment(flow, second))["slot_id"] == freed["slot_id"]
        assert [s for _, _, s in await _offers(flow)] == ["taken"]
    assert len(set(sim.frames_of("SRM^S02"))) == 1  # asked again with the same MSH-10
    assert len(flow.texts_to(second)) == _JOINED + 2  # one "moved" text
