"""Reminders end to end: a real daemon books by text on the simulated RIS, the injected clock moves, and the
reminder reaches the Twilio double at the right local time, once — or not at all after STOP or a cancel."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from channels import AckCode
from radsched.privacy import PhiBox
from radsched.retention import RetentionPolicy, run_job
from radsched.storage import reminders as reminder_store
from tests.smsflow.conftest import Clock, Flow, Patient, start_flow
from tests.smsflow.test_conversation import converse
from tests.smsflow.test_privacy import dump_everything, needles
from tests.twilio_double import TwilioDouble
from tests.waiting import eventually

NY = ZoneInfo("America/New_York")


async def book(flow: Flow, patient: Patient) -> datetime:
    """Book by text (first location, the first time offered); the appointment's start."""
    return (await book_order(flow, patient))[2]


async def reminders_of(flow: Flow) -> list[tuple[str, str, datetime]]:
    rows = await flow.fetch(
        "SELECT kind, state, due_at FROM appointment_reminders ORDER BY due_at, id"
    )
    return [(r["kind"], r["state"], r["due_at"]) for r in rows]


async def advance_to(flow: Flow, moment: datetime) -> None:
    """Move the clock and let the daemon's own sweep look (no manual pass)."""
    flow.clock.now = moment
    assert flow.daemon.reminders is not None
    flow.daemon.reminders.wake()


@pytest.fixture
async def demo(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> AsyncIterator[Flow]:
    async with start_flow(
        database_url, data_dir, twilio, clock, reminders="2m", reminder_window="off"
    ) as flow:
        yield flow


async def test_a_short_reminder_fires_once_at_its_time(demo: Flow) -> None:
    patient = Patient()
    start = await book(demo, patient)
    planned = await reminders_of(demo)
    assert planned == [("2m", "pending", start - timedelta(minutes=2))]
    sent = len(demo.twilio.accepted)
    await advance_to(demo, start - timedelta(minutes=3))
    assert await demo.daemon.reminders.sweep() == 0  # type: ignore[union-attr]
    await advance_to(demo, start - timedelta(minutes=2))
    texts = await demo.texts(sent + 1)
    reminder = texts[-1]
    assert reminder.to == patient.e164
    local = start.astimezone(NY)
    hour = local.hour % 12 or 12
    assert reminder.body.startswith("Reminder: your X-ray at Downtown Imaging on "), reminder.body
    assert f"{hour}:{local.minute:02d}" in reminder.body
    assert "Reply 1 to confirm, 2 to change, 3 to cancel." in reminder.body
    for secret in (patient.family, patient.given, patient.mrn):
        assert secret not in reminder.body
    # Once: more sweeps (and the timer) find nothing more to send; the row's sealed copy is gone.
    await advance_to(demo, start - timedelta(minutes=1))
    assert await demo.daemon.reminders.sweep() == 0  # type: ignore[union-attr]
    assert demo.counter("radsched_reminders_total", outcome="sent") == 1
    rows = await demo.fetch("SELECT state, phi FROM appointment_reminders")
    assert [(r["state"], r["phi"]) for r in rows] == [("sent", None)]
    assert len(demo.twilio.accepted) == sent + 1


async def book_order(flow: Flow, patient: Patient) -> tuple[str, str, datetime]:
    """(order id, appointment id, start) of a booking by text."""
    order_id = "PL" + secrets.token_hex(4).upper()
    assert (await flow.order(order_id, patient)).code is AckCode.AA
    await flow.texts(len(flow.twilio.accepted) or 1)
    await converse(flow, patient, "yes")
    await converse(flow, patient, "1")
    assert (await converse(flow, patient, "1")).startswith("Booked")
    rows = await flow.fetch(
        "SELECT appointment_id, start_at FROM appointments ORDER BY created_at DESC LIMIT 1"
    )
    return order_id, rows[0]["appointment_id"], rows[0]["start_at"]


async def test_stop_before_the_reminder_sends_nothing(demo: Flow) -> None:
    patient = Patient()
    start = await book(demo, patient)
    assert "no more texts" in await converse(demo, patient, "STOP")
    sent = len(demo.twilio.accepted)
    demo.clock.now = start - timedelta(minutes=2)
    assert await demo.daemon.reminders.sweep() == 1  # type: ignore[union-attr]
    rows = await demo.fetch("SELECT state, outcome, phi FROM appointment_reminders")
    assert [tuple(r) for r in rows] == [("skipped", "skipped_opted_out", None)]
    assert len(demo.twilio.accepted) == sent
    assert demo.counter("radsched_reminders_total", outcome="skipped_opted_out") == 1


@pytest.mark.parametrize("how", ["lifecycle", "ris_order_cancel"])
async def test_a_cancel_stops_the_reminder(demo: Flow, how: str) -> None:
    patient = Patient()
    order_id, appointment_id, start = await book_order(demo, patient)
    lifecycle = demo.daemon.lifecycle
    assert lifecycle is not None
    if how == "lifecycle":
        await lifecycle.cancel(appointment_id, origin="rest")
    else:
        assert (await demo.order(order_id, patient, control="CA")).code is AckCode.AA
    rows = await demo.fetch("SELECT state, outcome, phi FROM appointment_reminders")
    assert [tuple(r) for r in rows] == [("cancelled", "cancelled", None)]
    demo.clock.now = start - timedelta(minutes=2)
    assert await demo.daemon.reminders.sweep() == 0  # type: ignore[union-attr]
    # (A cancel at the RIS texts "no longer booked", issue 13 item 4; never a reminder.)
    assert not any(text.startswith("Reminder") for text in demo.texts_to(patient))


async def test_a_reschedule_moves_the_reminder_to_the_new_time(demo: Flow) -> None:
    patient = Patient()
    _, appointment_id, start = await book_order(demo, patient)
    lifecycle, scheduling = demo.daemon.lifecycle, demo.daemon.scheduling
    assert lifecycle is not None and scheduling is not None
    later = await scheduling.slots(
        "DTWN", "CR", start=start + timedelta(hours=2), end=start + timedelta(days=7), limit=1
    )
    await lifecycle.reschedule(appointment_id, later[0].id, origin="rest")
    new_start = later[0].start
    rows = await demo.fetch(
        "SELECT start_at, state, outcome FROM appointment_reminders ORDER BY start_at"
    )
    assert [tuple(r) for r in rows] == [
        (start, "cancelled", "rescheduled"),
        (new_start, "pending", None),
    ]
    sent = len(demo.twilio.accepted)
    demo.clock.now = start - timedelta(minutes=2)  # the old time: nothing
    assert await demo.daemon.reminders.sweep() == 0  # type: ignore[union-attr]
    assert len(demo.twilio.accepted) == sent
    await advance_to(demo, new_start - timedelta(minutes=2))
    texts = await demo.texts(sent + 1)
    local = new_start.astimezone(NY)
    assert texts[-1].to == patient.e164
    assert f"at Downtown Imaging on {local:%a} {local:%b} {local.day} " in texts[-1].body


async def test_two_sweeps_at_once_queue_the_reminder_once(demo: Flow) -> None:
    patient = Patient()
    start = await book(demo, patient)
    reminders = demo.daemon.reminders
    assert reminders is not None
    demo.clock.now = start - timedelta(minutes=2)  # not woken: the two sweeps below race for it
    settled = await asyncio.gather(*(reminders.sweep() for _ in range(4)))
    assert sorted(settled) == [0, 0, 0, 1]
    rows = await demo.fetch("SELECT template_id FROM sms_outbox WHERE template_id LIKE 'reminder%'")
    assert [r["template_id"] for r in rows] == ["reminder"]


async def test_default_window_moves_a_night_reminder_to_the_earlier_opening(
    database_url: str, data_dir: Path, twilio: TwilioDouble
) -> None:
    # Sunday 7 Jun 2026, 06:00 in New York: the first time offered is Monday morning.
    clock = Clock(datetime(2026, 6, 7, 10, 0, tzinfo=UTC))
    async with start_flow(database_url, data_dir, twilio, clock, reminders="1d,6h") as flow:
        patient = Patient()
        start = await book(flow, patient)
        local = start.astimezone(NY)
        assert (local.date().isoformat(), local.hour) == ("2026-06-08", 8), local
        # 1d (Sun 8:00) falls before the window, its opening (Sat 9:00) before the booking: skipped.
        # 6h (Mon 2:00) moves to the nearest earlier opening: Sun 9:00.
        sunday_nine = datetime(2026, 6, 7, 9, 0, tzinfo=NY)
        assert await reminders_of(flow) == [("6h", "pending", sunday_nine)]
        sent = len(flow.twilio.accepted)
        await advance_to(flow, sunday_nine - timedelta(minutes=1))
        assert await flow.daemon.reminders.sweep() == 0  # type: ignore[union-attr]
        assert len(flow.twilio.accepted) == sent
        await advance_to(flow, sunday_nine)
        texts = await flow.texts(sent + 1)
        assert texts[-1].to == patient.e164
        assert "Mon Jun 8 8:00am" in texts[-1].body, texts[-1].body


async def test_a_prep_line_rides_along_or_follows_as_a_second_text(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock, tmp_path: Path
) -> None:
    config = tmp_path / "radsched.toml"
    config.write_text(
        '[sms.prep]\nCR = "Wear clothes without metal."\n'
        '"71045" = "Please arrive 15 minutes early and bring a list of your current medicines;'
        ' leave jewellery at home. Ask us if you might be pregnant."\n'
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RADSCHED_CONFIG", str(config))
        async with start_flow(
            database_url, data_dir, twilio, clock, reminders="2m", reminder_window="off"
        ) as flow:
            patient = Patient()
            start = await book(flow, patient)  # procedure 71045 (the orm() default), modality CR
            sent = len(flow.twilio.accepted)
            await advance_to(flow, start - timedelta(minutes=2))
            texts = await flow.texts(sent + 2)
            reminder, prep = texts[-2], texts[-1]
            assert reminder.body.startswith("Reminder: ") and "Wear clothes" not in reminder.body
            assert prep.body.startswith("Please arrive 15 minutes early")
            assert {reminder.to, prep.to} == {patient.e164}


async def test_nothing_of_the_patient_is_kept_a_day_after_the_start(demo: Flow) -> None:
    patient = Patient()
    order_id, _, start = await book_order(demo, patient)
    # Pending: the number is in the row only sealed.
    assert patient.e164 not in await dump_everything(demo)
    sent = len(demo.twilio.accepted)
    await advance_to(demo, start - timedelta(minutes=2))
    await demo.texts(sent + 1)
    rows = await demo.fetch("SELECT state, phi FROM appointment_reminders")
    assert [tuple(r) for r in rows] == [("sent", None)]
    # The start + 1 day: the retention job deletes the reminder rows with the record's identifiers.
    now = start + timedelta(days=1, minutes=1)
    report = await run_job(demo.daemon.db, now, RetentionPolicy(), wait=True, only_if_due=False)
    assert report.removed["appointment_reminders rows"] == 1
    assert await demo.fetch("SELECT 1 FROM appointment_reminders") == []
    dump = await dump_everything(demo)
    leaks = [what for what, needle in needles(patient, order_id, []).items() if needle in dump]
    assert leaks == []


async def test_a_row_that_cannot_be_opened_is_skipped_and_the_others_still_go(demo: Flow) -> None:
    patient = Patient()
    _, appointment_id, start = await book_order(demo, patient)
    # A row sealed under a key no longer in PHI_KEY (left from before a rotation), due first.
    stranger = PhiBox.from_secret("hex:" + secrets.token_hex(32), setting="test")
    async with demo.daemon.db.transaction("test.plant") as conn:
        await reminder_store.insert_planned(
            conn,
            phi=stranger,
            appointment_id=appointment_id,
            start_at=start,
            phone_hash=demo.hash_of(patient),
            due=[("3m", start - timedelta(minutes=3))],
            payload={"phone": patient.e164},
            now=demo.clock.now,
        )
    sent = len(demo.twilio.accepted)
    await advance_to(demo, start - timedelta(minutes=2))
    texts = await demo.texts(sent + 1)
    assert texts[-1].body.startswith("Reminder: ")
    rows = await demo.fetch("SELECT kind, state, outcome FROM appointment_reminders ORDER BY kind")
    assert [tuple(r) for r in rows] == [
        ("2m", "sent", None),
        ("3m", "skipped", "skipped_no_number"),
    ]


async def test_planned_before_a_restart_sent_once_by_two_daemons_after_it(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock, tmp_path: Path
) -> None:
    common: dict[str, object] = {
        "phone_hash_key": secrets.token_hex(32),
        "phi_key": secrets.token_hex(32),
        "reminders": "2m",
        "reminder_window": "off",
        "shutdown_grace_s": 0.2,
    }
    patient = Patient()
    async with start_flow(database_url, data_dir, twilio, clock, **common) as first:
        start = await book(first, patient)
    # The daemon that planned it is gone; two others share the database when it falls due.
    other_dir = tmp_path / "second"
    other_dir.mkdir(mode=0o700)
    sent = len(twilio.accepted)
    async with (
        start_flow(database_url, data_dir, twilio, clock, **common) as one,
        start_flow(database_url, other_dir, twilio, clock, **common) as two,
    ):
        assert one.daemon.reminders is not None and two.daemon.reminders is not None
        clock.now = start - timedelta(minutes=2)
        one.daemon.reminders.wake()
        two.daemon.reminders.wake()
        await asyncio.gather(one.daemon.reminders.sweep(), two.daemon.reminders.sweep())
        texts = await one.texts(sent + 1)
        assert texts[-1].to == patient.e164 and texts[-1].body.startswith("Reminder: ")
        queued = await one.fetch("SELECT 1 FROM sms_outbox WHERE template_id = 'reminder'")
        assert len(queued) == 1


async def test_stop_after_the_reminder_was_queued_keeps_it_from_the_patient(demo: Flow) -> None:
    patient = Patient()
    start = await book(demo, patient)
    sent, asked = len(demo.twilio.accepted), len(demo.twilio.requests)
    demo.twilio.fail_next(1, 500)  # the reminder's first attempt fails: it waits in the outbox
    await advance_to(demo, start - timedelta(minutes=2))
    await demo.twilio.wait_requests(asked + 1)

    async def waiting_to_retry() -> bool:
        rows = await demo.fetch("SELECT state FROM sms_outbox WHERE template_id = 'reminder'")
        return [r["state"] for r in rows] == ["pending"]

    await eventually(waiting_to_retry, what="the failed reminder back in the outbox")
    assert "no more texts" in await converse(demo, patient, "stop texting me")
    # Dropped with its sealed number and body: no retry can send it any more.
    rows = await demo.fetch("SELECT state, payload FROM sms_outbox WHERE template_id = 'reminder'")
    assert [tuple(r) for r in rows] == [("dead", None)]
    assert [m.body for m in demo.twilio.accepted[sent:] if m.body.startswith("Reminder")] == []
