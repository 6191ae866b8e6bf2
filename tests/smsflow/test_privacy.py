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

import pytest

from channels import AckCode
from radsched.logs import JsonFormatter, TextFormatter
from tests.smsflow.conftest import PUBLIC_URL, Flow, Patient
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
