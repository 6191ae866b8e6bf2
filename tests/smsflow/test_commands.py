"""``radsched report``, ``modality`` and ``hash-phone``: run as real processes beside a running daemon."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta

from radsched.report import build_report, render_table
from tests.smsflow.conftest import Flow, Patient
from tests.smsflow.test_conversation import book_by_text, converse, new_order_id


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
