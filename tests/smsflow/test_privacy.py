"""Privacy proof: after whole conversations, no patient data at rest, in logs or in metrics.

End to end through the real edges: the order arrives over MLLP, texts leave through the daemon's
outbox to the Twilio double, the patient's replies come back as signed ``/sms/inbound`` webhooks,
and the booking is made on the simulated RIS (whose SIU goes to the in-process EMR sink). Then every
row of every table (all columns; bytea as hex, text escaped, via PostgreSQL's own row-to-text), every
log record (rendered by both log formatters, extras included), stdout/stderr and the metrics page are
searched for the patient's phone number in every common spelling, MRN, name, date of birth, order id
and the bodies of the texts both ways.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from pathlib import Path

import pytest

from channels import AckCode
from radsched.logs import JsonFormatter, TextFormatter
from radsched.retention import RetentionPolicy, run_job
from tests.smsflow.conftest import PUBLIC_URL, Clock, Flow, Patient, start_flow
from tests.twilio_double import TwilioDouble
from tests.waiting import eventually


def spellings(patient: Patient) -> list[str]:
    a, e, n = patient.area, patient.exchange, patient.line
    return [
        patient.e164,
        f"1{a}{e}{n}",
        f"{a}{e}{n}",
        f"({a}) {e}-{n}",
        f"({a}){e}-{n}",
        f"{a}-{e}-{n}",
        f"{a}.{e}.{n}",
        f"{a} {e} {n}",
        f"+1 {a} {e} {n}",
        f"+1 ({a}) {e}-{n}",
        f"{e}-{n}",
        f"{e}{n}",
    ]


def needles(patient: Patient, order_id: str, bodies: list[str]) -> dict[str, str]:
    found = {f"phone {s!r}": s for s in spellings(patient)}
    found |= {
        "MRN": patient.mrn,
        "family name": patient.family,
        "given name": patient.given,
        "family name (title case)": patient.family.title(),
        "date of birth": patient.dob,
        "date of birth (ISO)": f"{patient.dob[:4]}-{patient.dob[4:6]}-{patient.dob[6:]}",
        "order id": order_id,
    }
    # A one-digit menu choice is in every haystack; the distinctive texts are what must not be.
    found |= {f"text body {i}": body for i, body in enumerate(bodies) if len(body) >= 8}
    return found


async def webhook(flow: Flow, patient: Patient, body: str) -> str:
    before = len(flow.twilio.accepted)
    status, _ = await flow.twilio.post_inbound(flow.http, PUBLIC_URL, from_=patient.e164, body=body)
    assert status == 200
    await flow.engine.drain()
    texts = await flow.texts(before + 1)
    return texts[-1].body


async def siu_delivered(flow: Flow) -> None:
    """The booking's SIU^S12 reached the in-process EMR sink (so its logging is searched too)."""
    emr = flow.daemon.emr
    assert emr is not None and emr.sink is not None
    sink = emr.sink

    async def received() -> bool:  # the EMR sender drains after the booking commits
        return bool(sink.received)

    await eventually(received, timeout=10, what="the SIU at the EMR sink")


async def dump_everything(flow: Flow) -> str:
    tables = await flow.fetch(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
    )
    assert {"orders", "sms_conversations", "sms_audit_log", "sms_outbox"} <= {
        r["table_name"] for r in tables
    }
    parts: list[str] = []
    for row in tables:
        name = row["table_name"]
        # PostgreSQL's own rendering: every column, bytea as \x hex, text with escapes.
        rows = await flow.fetch(f'SELECT t::text AS r FROM "{name}" t')
        parts += [f"{name}: {r['r']}" for r in rows]
    return "\n".join(parts)


@pytest.mark.parametrize("ending", ["booked", "stopped"])
async def test_no_patient_data_anywhere_after_whole_conversations(
    flow: Flow, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], ending: str
) -> None:
    caplog.set_level(logging.DEBUG)
    patient, order_id = Patient(), "PL" + secrets.token_hex(5).upper()
    ack = await flow.order(
        order_id, patient, phone=f"({patient.area}){patient.exchange}-{patient.line}^PRN^CP"
    )
    assert ack.code is AckCode.AA
    await flow.texts(1)
    inbound = ["Yes please", f"what about {patient.given.lower()} kumquat time", "1"]
    answers = [await webhook(flow, patient, body) for body in inbound]
    if ending == "booked":
        inbound.append("2")
        answers.append(await webhook(flow, patient, "2"))
        assert "Code" in answers[-1]
        await siu_delivered(flow)
    else:
        inbound.append("stop texting me please")
        answers.append(await webhook(flow, patient, inbound[-1]))
    conv = await flow.conversation(patient)
    assert conv["phi"] is None and conv["ended_at"] is not None

    bodies = [flow.twilio.accepted[0].body, answers[-1], *inbound[:2], inbound[-1]]
    search = needles(patient, order_id, bodies)
    records = caplog.records
    assert records, "expected log output to search"
    rendered = [f.format(r) for r in records for f in (JsonFormatter(), TextFormatter())]
    captured = capsys.readouterr()
    haystacks = {
        "database": await dump_everything(flow),
        "logs": "\n".join(rendered),
        "stdout/stderr": captured.out + captured.err,
        "metrics": flow.daemon.metrics.render().decode(),
    }
    leaks = [
        f"{what} found in {where}"
        for where, text in haystacks.items()
        for what, needle in search.items()
        if needle in text
    ]
    assert leaks == []


async def _database_files(flow: Flow) -> bytes:
    """Every file of this test's database and the cluster's WAL, after a checkpoint: what a copy
    of the PostgreSQL directory would hold (dead row versions included)."""
    [row] = await flow.fetch(
        "SELECT current_setting('data_directory') AS dir, "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) AS oid"
    )
    await flow.fetch("CHECKPOINT")
    root = Path(row["dir"])
    files = [*(root / "base" / str(row["oid"])).rglob("*"), *(root / "pg_wal").glob("0*")]
    return b"".join(p.read_bytes() for p in files if p.is_file())


async def test_nothing_of_the_patient_is_left_once_the_appointment_is_over(
    database_url: str,
    data_dir: Path,
    twilio: TwilioDouble,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 13's privacy rule: what reminders, replies and requests need is kept sealed only until
    the appointment is over (start + 1 day); then the database, its files and the logs hold nothing."""
    caplog.set_level(logging.DEBUG)
    async with start_flow(
        database_url, data_dir, twilio, clock, reminders="2m", reminder_window="off"
    ) as flow:
        patient, order_id = Patient(), "PL" + secrets.token_hex(5).upper()
        assert (await flow.order(order_id, patient)).code is AckCode.AA
        await flow.texts(1)
        mine = f"is {patient.given.lower()} kumquat ok"
        answers = [await webhook(flow, patient, body) for body in ("yes", mine, "1", "1")]
        assert answers[-1].startswith("Booked")
        [appointment] = await flow.fetch("SELECT start_at FROM appointments")
        start = appointment["start_at"]
        await webhook(flow, patient, "1")  # confirmed
        await webhook(flow, patient, "3")  # a staff request, its number sealed
        sent = len(flow.twilio.accepted)
        clock.now = start - timedelta(minutes=2)
        assert flow.daemon.reminders is not None
        flow.daemon.reminders.wake()
        assert (await flow.texts(sent + 1))[-1].body.startswith("Reminder")

        report = await run_job(
            flow.daemon.db, start + timedelta(days=1, minutes=1), RetentionPolicy(),
            wait=True, only_if_due=False,
        )  # fmt: skip
        assert report.removed["appointment PHI"] == 1
        # Not even sealed: every encrypted copy of the number and identifiers is gone.
        sealed = await flow.fetch(
            """SELECT 'appointments' AS t FROM appointments WHERE phi IS NOT NULL
               UNION ALL SELECT 'orders' FROM orders WHERE phi IS NOT NULL
               UNION ALL SELECT 'sms_conversations' FROM sms_conversations WHERE phi IS NOT NULL
               UNION ALL SELECT 'staff_requests' FROM staff_requests WHERE phi IS NOT NULL
               UNION ALL SELECT 'appointment_reminders' FROM appointment_reminders
               UNION ALL SELECT 'sms_outbox' FROM sms_outbox WHERE payload IS NOT NULL"""
        )
        assert [r["t"] for r in sealed] == []
        # Only what is this patient's: the generic texts are in every test's WAL of the cluster.
        search = needles(patient, order_id, [mine, answers[-1]])
        rendered = [f.format(r) for r in caplog.records for f in (JsonFormatter(), TextFormatter())]
        database = await dump_everything(flow)
        files = await _database_files(flow)
        leaks = [f"{what} in the database" for what, n in search.items() if n in database]
        leaks += [f"{what} in the logs" for what, n in search.items() if n in "\n".join(rendered)]
        leaks += [
            f"{what} in PostgreSQL's files" for what, n in search.items() if n.encode() in files
        ]
        assert leaks == []
        assert files, "expected database files to search"
