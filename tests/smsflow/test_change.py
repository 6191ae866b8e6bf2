"""Issue 13 item 2: "2" after the booking moves the appointment by text.

Through a real daemon, the simulated RIS on loopback and an EMR peer: the patient books by text,
replies "2", gets the times at the same location, picks one; the RIS gets an SRM^S02, the EMR an
SIU^S13, and the patient the new time and a new code, which the record keeps.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from radsched.report import build_report
from radsched.simris import SimRis
from tests.smsflow.conftest import Clock, Flow, Patient, start_flow, start_flow_with_emr
from tests.smsflow.test_conversation import CODE, book_by_text, converse, new_order_id
from tests.twilio_double import TwilioDouble
from tests.waiting import eventually


@pytest.fixture
async def flow(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock, sim: SimRis
) -> AsyncIterator[Flow]:
    async with start_flow_with_emr(database_url, data_dir, twilio, clock, sim) as (started, _):
        yield started


async def _booked(flow: Flow) -> tuple[str, str]:
    [row] = await flow.fetch("SELECT appointment_id, confirmation_code FROM appointments")
    return row["appointment_id"], row["confirmation_code"]


async def test_2_then_a_time_moves_the_appointment_with_a_new_code(flow: Flow, sim: SimRis) -> None:
    patient = Patient()
    confirmation = await book_by_text(flow, patient)
    appointment_id, old_code = await _booked(flow)
    assert old_code in confirmation

    menu = await converse(flow, patient, "2")
    assert menu.startswith("Other times at Downtown Imaging"), menu
    assert "1 " in menu and "MORE" in menu
    later = await converse(flow, patient, "MORE")
    assert later.startswith("Other times at Downtown Imaging") and later != menu
    moved = await converse(flow, patient, "1")

    assert moved.startswith("Moved: ") and "Downtown Imaging" in moved, moved
    code = re.search(r"Code (\S+)\.", moved)
    assert code and CODE.fullmatch(code.group(1)) and code.group(1) != old_code
    assert len(sim.frames_of("SRM^S02")) == 1
    [row] = await flow.fetch(
        "SELECT status, start_at, confirmation_code, changed_by FROM appointments"
    )
    assert row["status"] == "rescheduled" and row["changed_by"] == "sms"
    assert row["confirmation_code"] == code.group(1)
    # The new time is the first of the later page the patient was shown.
    first_later = later.split("\n")[1].removeprefix("1 ")
    assert first_later in moved
    await eventually(
        lambda: flow.fetch(
            "SELECT 1 FROM hl7_outbox WHERE appointment_id = $1 AND message_type = 'SIU^S13'",
            appointment_id,
        )
    )
    # The change conversation is over and forgot the number; nothing else went to the patient.
    convs = await flow.fetch("SELECT state, phi, order_key FROM sms_conversations")
    assert sorted(r["state"] for r in convs) == ["booked", "rescheduled"]
    assert all(r["phi"] is None for r in convs)
    assert [r["kind"] for r in await flow.fetch("SELECT kind FROM staff_requests")] == []
    assert flow.texts_to(patient)[-1] == moved
    # The order stays booked (a change conversation has no order of its own).
    assert [r["state"] for r in await flow.fetch("SELECT state FROM orders")] == ["booked"]
    # "1" now confirms the moved appointment.
    assert (await converse(flow, patient, "1")).startswith("Thank you")
    async with flow.daemon.db.transaction("test.report") as conn:
        reported = await build_report(conn, datetime(2000, 1, 1, tzinfo=UTC))
    assert sum(r.changed for r in reported) == 1  # radsched report's CHANGED (issue 13 item 7)


async def test_l_moves_the_appointment_to_another_location(flow: Flow, sim: SimRis) -> None:
    patient = Patient()
    await book_by_text(flow, patient)
    [before] = await flow.fetch("SELECT location_id FROM appointments")
    assert "L for other places" in await converse(flow, patient, "2")
    places = await converse(flow, patient, "L")
    assert "1 Downtown Imaging" in places and "2 North Campus" in places, places
    times = await converse(flow, patient, "2")
    assert times.startswith("Other times at North Campus"), times
    moved = await converse(flow, patient, "1")
    assert moved.startswith("Moved: ") and "North Campus" in moved, moved
    [row] = await flow.fetch("SELECT status, location_id FROM appointments")
    assert row["status"] == "rescheduled" and row["location_id"] != before["location_id"]
    assert len(sim.frames_of("SRM^S02")) == 1


async def test_stop_in_the_change_conversation_opts_out_and_asks_staff(flow: Flow) -> None:
    patient = Patient()
    await book_by_text(flow, patient)
    await converse(flow, patient, "2")
    goodbye = await converse(flow, patient, "STOP")
    assert "no more texts" in goodbye
    convs = await flow.fetch("SELECT state, phi FROM sms_conversations")
    assert sorted(r["state"] for r in convs) == ["booked", "opted_out"]
    assert all(r["phi"] is None for r in convs)
    [request] = await flow.fetch("SELECT kind FROM staff_requests")
    assert request["kind"] == "opted_out"
    [row] = await flow.fetch("SELECT status FROM appointments")
    assert row["status"] == "booked"
    # No order was handed to staff: the appointment stands (the request is for a person).
    assert [r["state"] for r in await flow.fetch("SELECT state FROM orders")] == ["booked"]
    assert flow.counter("radsched_sms_deferrals_total", modality="CR", reason="opted_out") == 0


async def test_2_for_two_appointments_goes_to_staff(flow: Flow) -> None:
    patient = Patient()
    await book_by_text(flow, patient)
    await book_by_text(flow, patient, order_id=new_order_id())
    taken = await converse(flow, patient, "2")
    assert "scheduling team" in taken
    [request] = await flow.fetch("SELECT kind, appointment_id FROM staff_requests")
    assert request["kind"] == "unclear" and request["appointment_id"] is None


async def test_a_refused_move_offers_fresh_times_and_the_appointment_stands(
    flow: Flow, sim: SimRis
) -> None:
    patient = Patient()
    await book_by_text(flow, patient)
    _, old_code = await _booked(flow)
    await converse(flow, patient, "2")
    sim.set_faults(refuse_changes=True)
    again = await converse(flow, patient, "1")
    assert again.startswith("Sorry, that time was just taken"), again
    [row] = await flow.fetch("SELECT status, confirmation_code FROM appointments")
    assert tuple(row) == ("booked", old_code)
    sim.set_faults(refuse_changes=False)
    moved = await converse(flow, patient, "2")
    assert moved.startswith("Moved: "), moved
    [row] = await flow.fetch("SELECT status FROM appointments")
    assert row["status"] == "rescheduled"


async def test_a_move_interrupted_by_a_crash_is_finished_after_restart(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock, sim: SimRis
) -> None:
    keys = {"phone_hash_key": secrets.token_hex(32), "phi_key": secrets.token_hex(32)}
    common = {"ris_addr": f"127.0.0.1:{sim.port}", "shutdown_grace_s": 0.2, **keys}
    patient = Patient()
    async with start_flow(database_url, data_dir, twilio, clock, **common) as flow:
        await book_by_text(flow, patient)
        await converse(flow, patient, "2")
        # The RIS moves the appointment but its answer is held; the daemon stops before it arrives.
        sim.set_faults(stall=True)
        await flow.engine.on_inbound_text(patient.e164, "1", "SM" + secrets.token_hex(16), "t")
        states = {r["state"] for r in await flow.fetch("SELECT state FROM sms_conversations")}
        assert states == {"booked", "rescheduling"}
    sim.set_faults(stall=False)
    before = len(twilio.accepted)
    async with start_flow(database_url, data_dir, twilio, clock, **common) as flow:
        moved = (await flow.texts(before + 1))[-1]
        assert moved.to == patient.e164 and moved.body.startswith("Moved: "), moved.body
        [row] = await flow.fetch("SELECT status, confirmation_code FROM appointments")
        assert row["status"] == "rescheduled" and row["confirmation_code"] in moved.body
    assert len(set(sim.frames_of("SRM^S02"))) == 1  # asked again with the same MSH-10
