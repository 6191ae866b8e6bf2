"""``radsched report``, ``modality`` and ``hash-phone``: run as real processes beside a running daemon."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

from radsched.report import build_report, render_table
from radsched.simris import SimRis, default_calendar
from tests.smsflow.conftest import Clock, Flow, Patient, start_flow
from tests.smsflow.test_conversation import book_by_text, converse, new_order_id
from tests.smsflow.test_staff_requests import KEY, api, pending
from tests.twilio_double import TwilioDouble
from tests.waiting import eventually


async def radsched(flow: Flow, *args: str) -> tuple[int, str]:
    settings = flow.daemon.settings
    assert settings.database_url and settings.phone_hash_key and settings.phi_key
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RADSCHED_")},
        "RADSCHED_DATABASE_URL": settings.database_url.get_secret_value(),
        "RADSCHED_DATA_DIR": str(settings.data_dir),
        "RADSCHED_PHONE_HASH_KEY": settings.phone_hash_key.get_secret_value(),
        "RADSCHED_PHI_KEY": settings.phi_key.get_secret_value(),
        "RADSCHED_ENABLED_MODALITIES": settings.enabled_modalities,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "radsched",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_report_counts_per_modality(flow: Flow) -> None:
    booked, stopped, other = Patient(), Patient(), Patient()
    await book_by_text(flow, booked)
    # Counted before the order: its consent text can be accepted before the next line runs.
    before = len(flow.twilio.accepted)
    await flow.order(new_order_id(), stopped)
    await flow.texts(before + 1)
    await converse(flow, stopped, "STOP")
    await flow.order(new_order_id(), other, modality="CT")  # disabled: call-us text
    since = flow.clock() - timedelta(days=1)
    async with flow.daemon.db.transaction("test.report") as conn:
        rows = {r.modality: r for r in await build_report(conn, since)}
    cr, ct = rows["CR"], rows["CT"]
    assert (cr.orders, cr.bookings, cr.consents, cr.opt_outs, cr.deferred) == (2, 1, 1, 1, 1)
    assert (cr.texts_out, cr.texts_in) == (6, 4)  # 4 + consent request, opt-out confirmation
    assert cr.median_to_book_s is not None and cr.median_to_book_s >= 0
    assert (ct.orders, ct.deferred, ct.texts_out, ct.bookings) == (1, 1, 1, 0)
    table = render_table(list(rows.values()), since)
    assert "CR" in table and "TOTAL" in table and "MEDIAN TO BOOK" in table


async def test_commands_work_beside_the_running_daemon(flow: Flow) -> None:
    code, out = await radsched(flow, "modality", "disable", "CT", "--by", "ops", "--note", "no CT")
    assert code == 0, out
    code, out = await radsched(flow, "modality", "list")
    assert (
        code == 0 and "CT         disabled  config" in out and "CR         enabled   default" in out
    )
    code, out = await radsched(flow, "modality", "enable", "SCAN", "--by", "ops")
    assert code == 2 and "not a DICOM modality code" in out

    patient = Patient()
    await flow.order(new_order_id(), patient)
    await flow.texts(1)
    code, out = await radsched(flow, "report", "--json", "--since", "2026-01-01")
    assert code == 0, out
    report = json.loads(out)
    assert report["modalities"][0]["modality"] == "CR" and report["modalities"][0]["orders"] == 1

    code, out = await radsched(
        flow, "hash-phone", f"({patient.area}) {patient.exchange}-{patient.line}"
    )
    assert (code, out.strip()) == (0, flow.hash_of(patient))
    code, out = await radsched(flow, "hash-phone", "12")
    assert code == 2 and patient.line not in out


async def test_the_report_counts_what_happened_after_booking(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> None:
    """Issue 13 item 7: reminders, confirmations, cancel requests and their decisions, and the RIS's
    cancels and moves of appointments booked by text, per modality, in a second table and the JSON."""
    since = clock() - timedelta(days=1)
    async with SimRis(default_calendar(clock=clock)) as sim:
        await sim.start()
        async with start_flow(
            database_url,
            data_dir,
            twilio,
            clock,
            api_keys=KEY,
            ris_addr=f"127.0.0.1:{sim.port}",
            reminders="2m",
            reminder_window="off",
        ) as flow:
            sim.notify = (flow.daemon.listening["mllp"].host, flow.daemon.listening["mllp"].port)
            reminded, denied, moved, cancelled = Patient(), Patient(), Patient(), Patient()
            await book_by_text(flow, reminded)
            [row] = await flow.fetch("SELECT start_at FROM appointments")
            clock.now = row["start_at"] - timedelta(minutes=2)
            assert flow.daemon.reminders is not None
            sent = len(twilio.accepted)
            assert await flow.daemon.reminders.sweep() == 1
            assert (await flow.texts(sent + 1))[-1].body.startswith("Reminder: ")
            assert (await converse(flow, reminded, "1")).startswith("Thank you")
            await converse(flow, reminded, "3")
            for patient in (denied, moved, cancelled):
                await book_by_text(flow, patient, order_id=new_order_id())
            await converse(flow, denied, "3")
            ids = {
                r["phone_hash"]: (r["appointment_id"], r["location_id"], r["start_at"])
                for r in await flow.fetch(
                    "SELECT phone_hash, appointment_id, location_id, start_at FROM appointments"
                )
            }
            requests = {r["appointment_id"]: r["id"] for r in await pending(flow)}
            for patient, decision in ((reminded, "approve"), (denied, "deny")):
                request_id = requests[ids[flow.hash_of(patient)][0]]
                sent = len(twilio.accepted)
                status, body = await api(
                    flow, "POST", f"/api/staff-requests/{request_id}/{decision}", {"by": "ops"}
                )
                assert status == 200, body
                assert (await flow.texts(sent + 1))[-1].to == patient.e164  # the answer
            await converse(flow, moved, "3")  # left pending
            appointment_id, location_id, start = ids[flow.hash_of(moved)]
            later = next(
                s
                for s in sim.calendar.open_slots(
                    location_id, "CR", start, start + timedelta(days=365)
                )
                if s.start > start
            )
            assert (await sim.staff_move(appointment_id, later.id))["ack"] == "AA"
            assert (await sim.staff_cancel(ids[flow.hash_of(cancelled)][0]))["ack"] == "AA"

            async def ris_changes_recorded() -> bool:
                rows = await flow.fetch("SELECT 1 FROM appointment_events WHERE origin = 'ris'")
                return len(rows) == 2

            await eventually(ris_changes_recorded)
            async with flow.daemon.db.transaction("test.report") as conn:
                [cr] = [r for r in await build_report(conn, since) if r.modality == "CR"]
            assert (cr.reminders_sent, cr.confirmed) == (1, 1)
            assert (
                cr.cancel_requests,
                cr.cancel_requests_approved,
                cr.cancel_requests_denied,
                cr.cancel_requests_pending,
                cr.other_requests,
            ) == (3, 1, 1, 1, 0)
            # The approved cancel was ours (origin rest), not the RIS's.
            assert (cr.ris_cancels, cr.ris_moves) == (1, 1)
            table = render_table([cr], since)
            after = table.split("After booking\n", 1)[1].splitlines()
            assert after[0].split() == [
                "MODALITY", "REMINDERS", "CONFIRMED", "CANCEL", "REQ", "APPROVED", "DENIED",
                "PENDING", "OTHER", "REQ", "RIS", "CANCELS", "RIS", "MOVES", "NO-SHOWS",
                "CHANGED", "W", "JOINS", "W", "OFFERS", "W", "FILLS",
            ]  # fmt: skip
            assert after[1].split() == [
                "CR", "1", "1", "3", "1", "1", "1", "0", "1", "1", "0", "0", "0", "0", "0",
            ]  # fmt: skip
            code, out = await radsched(flow, "report", "--json", "--since", "2026-01-01")
            assert code == 0, out
            [reported] = [m for m in json.loads(out)["modalities"] if m["modality"] == "CR"]
            assert reported["reminders_sent"] == 1 and reported["ris_moves"] == 1
            assert reported["cancel_requests_pending"] == 1
