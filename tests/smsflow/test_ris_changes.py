"""Issue 13 item 4: an appointment booked by text that the RIS cancels or moves gets one text.

Through a real daemon, the simulated RIS on loopback (its staff actions send SIU^S13/S15 to our MLLP
listener, as a RIS does), the Twilio double and the daemon's own EMR sink. The patient reads the
text at the Twilio double.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from radsched.report import build_report, render_table
from radsched.simris import SimRis
from tests.smsflow.conftest import SCHEDULING_PHONE, Clock, Flow, Patient, start_flow
from tests.smsflow.test_conversation import CODE, book_by_text, converse
from tests.twilio_double import TwilioDouble
from tests.waiting import eventually


async def _appointment(flow: Flow) -> tuple[str, str]:
    """The one appointment still booked: its RIS id and the code the patient was texted."""
    [row] = await flow.fetch(
        "SELECT appointment_id, confirmation_code FROM appointments WHERE status = 'booked'"
    )
    return row["appointment_id"], row["confirmation_code"]


async def _news_for(flow: Flow, patient: Patient, count: int) -> list[str]:
    await flow.texts(count)
    return flow.texts_to(patient)


@pytest.fixture
async def flow(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock, sim: SimRis
) -> AsyncIterator[Flow]:
    """A daemon booking on ``sim``, whose staff actions send their SIU to our MLLP listener."""
    async with start_flow(
        database_url, data_dir, twilio, clock, ris_addr=f"127.0.0.1:{sim.port}"
    ) as started:
        listener = started.daemon.listening["mllp"]
        sim.notify = (listener.host, listener.port)
        yield started


async def test_a_move_at_the_ris_texts_the_new_time_and_a_new_code(flow: Flow, sim: SimRis) -> None:
    twilio = flow.twilio
    patient = Patient()
    confirmation = await book_by_text(flow, patient)
    old_code = CODE.search(confirmation.split("Code", 1)[-1])
    assert old_code
    appointment_id, _ = await _appointment(flow)
    [booked] = await flow.fetch(
        "SELECT location_id, modality, start_at FROM appointments WHERE appointment_id = $1",
        appointment_id,
    )
    later = next(
        s
        for s in sim.calendar.open_slots(
            booked["location_id"],
            booked["modality"],
            booked["start_at"],
            booked["start_at"].replace(year=booked["start_at"].year + 1),
        )
        if s.start > booked["start_at"]
    )
    sent = len(twilio.accepted)
    assert (await sim.staff_move(appointment_id, later.id))["ack"] == "AA"

    texts = await _news_for(flow, patient, sent + 1)
    news = texts[-1]
    assert news.startswith("Your ") and "was moved to" in news, news
    new_code = re.search(r"New code (\S+)\.", news)
    assert new_code and new_code.group(1) != old_code.group(0)
    assert SCHEDULING_PHONE in news
    # The record carries the new code and time; the audit says what went out, never the text.
    [row] = await flow.fetch(
        "SELECT status, start_at, confirmation_code FROM appointments WHERE appointment_id = $1",
        appointment_id,
    )
    assert row["status"] == "rescheduled" and row["start_at"] == later.start
    assert row["confirmation_code"] == new_code.group(1)
    audit = await flow.fetch(
        "SELECT message_type, outcome FROM sms_audit_log WHERE phone_hash = $1 AND "
        "message_type LIKE 'appointment%' ORDER BY id",
        flow.hash_of(patient),
    )
    assert [tuple(r) for r in audit] == [
        ("appointment_moved", "queued"),
        ("appointment_news", "moved"),
    ]
    # The RIS resending the same S13 changes nothing and texts nothing.
    assert (await sim.staff_move(appointment_id, later.id))["ack"] in ("AA", "AE", "AR")
    assert len(twilio.accepted) == sent + 1


async def test_a_cancel_at_the_ris_texts_once_and_not_after_stop(flow: Flow, sim: SimRis) -> None:
    twilio = flow.twilio
    patient, quitter = Patient(), Patient()

    await book_by_text(flow, patient)
    appointment_id, _ = await _appointment(flow)
    sent = len(twilio.accepted)
    assert (await sim.staff_cancel(appointment_id))["ack"] == "AA"
    news = (await _news_for(flow, patient, sent + 1))[-1]
    assert "no longer booked" in news and SCHEDULING_PHONE in news, news
    assert "cancel" not in news.lower()  # CANCEL is an opt-out word at Twilio

    # A patient who opted out after booking hears nothing of the cancel.
    await book_by_text(flow, quitter)
    quitter_appointment, _ = await _appointment(flow)
    await converse(flow, quitter, "STOP")
    sent = len(twilio.accepted)
    assert (await sim.staff_cancel(quitter_appointment))["ack"] == "AA"

    async def recorded() -> bool:
        rows = await flow.fetch(
            "SELECT status FROM appointments WHERE appointment_id = $1", quitter_appointment
        )
        return rows[0]["status"] == "cancelled"

    await eventually(recorded, what="the RIS's cancel recorded")
    assert len(twilio.accepted) == sent
    skipped = await flow.fetch(
        "SELECT outcome FROM sms_audit_log WHERE phone_hash = $1 "
        "AND message_type = 'appointment_news_skipped'",
        flow.hash_of(quitter),
    )
    assert [r["outcome"] for r in skipped] == ["opted_out"]


async def test_a_no_show_at_the_ris_is_counted_in_the_report(flow: Flow, sim: SimRis) -> None:
    patient = Patient()
    await book_by_text(flow, patient)
    appointment_id, _ = await _appointment(flow)
    sent = len(flow.twilio.accepted)
    for _ in range(2):  # a RIS resending its S26: still one no-show
        assert (await sim.staff_noshow(appointment_id))["ack"] == "AA"

    async def recorded() -> bool:
        return bool(await flow.fetch("SELECT 1 FROM appointment_events WHERE kind = 'noshow'"))

    await eventually(recorded, what="the no-show recorded")
    since = flow.clock() - timedelta(days=1)
    async with flow.daemon.db.transaction("test.report") as conn:
        [cr] = [r for r in await build_report(conn, since) if r.modality == "CR"]
    assert (cr.noshows, cr.ris_cancels, cr.ris_moves) == (1, 0, 0)
    after = render_table([cr], since).split("After booking\n", 1)[1].splitlines()
    # Single-word headers up to NO-SHOWS line up with the row's cells.
    headers = (
        " ".join(after[0].split())
        .replace("CANCEL REQ", "CANCEL_REQ")
        .replace("OTHER REQ", "OTHER_REQ")
        .replace("RIS CANCELS", "RIS_CANCELS")
        .replace("RIS MOVES", "RIS_MOVES")
        .split()
    )
    assert after[1].split()[headers.index("NO-SHOWS")] == "1"
    assert len(flow.twilio.accepted) == sent  # the patient is not texted about it
