"""Issue 13 items 2 and 3: replies to an appointment booked by text, and staff's decisions.

Through a real daemon: the Twilio double, the in-process simulated RIS, real PostgreSQL. "1"
confirms, "3" asks staff to cancel, STOP opts out at once and asks staff too; a person approves
(the appointment is cancelled at the RIS and the patient told) or denies (the patient is asked to
call), through the REST API and through ``radsched requests``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.smsflow.conftest import SCHEDULING_PHONE, Clock, Flow, Patient, start_flow
from tests.smsflow.test_conversation import book_by_text, converse, new_order_id
from tests.twilio_double import TwilioDouble

KEY = "staff-requests-key-0123456789"


@pytest.fixture
async def flow(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> AsyncIterator[Flow]:
    async with start_flow(database_url, data_dir, twilio, clock, api_keys=KEY) as started:
        yield started


async def api(
    flow: Flow, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, flow.http + path, json=body, headers={"X-API-Key": KEY}) as r,
    ):
        return r.status, await r.json()


async def pending(flow: Flow) -> list[dict[str, Any]]:
    status, body = await api(flow, "GET", "/api/staff-requests?state=pending")
    assert status == 200, body
    return list(body["requests"])


async def test_1_confirms_and_3_asks_staff_who_approve(flow: Flow) -> None:
    patient = Patient()
    await book_by_text(flow, patient)
    [appointment] = await flow.fetch("SELECT appointment_id FROM appointments")
    appointment_id = appointment["appointment_id"]

    thanks = await converse(flow, patient, "1")
    assert thanks.startswith("Thank you") and "confirmed" in thanks
    [row] = await flow.fetch("SELECT confirmed_at FROM appointments")
    assert row["confirmed_at"] is not None

    taken = await converse(flow, patient, "3")
    assert "scheduling team" in taken and "cancel" not in taken.lower()
    # Asked twice: still one request. Wait for its answer, so it is not taken for the news below.
    assert "scheduling team" in await converse(flow, patient, "3")
    [request] = await pending(flow)
    assert request["kind"] == "cancel" and request["appointment_id"] == appointment_id
    assert flow.counter("radsched_staff_requests", state="pending") in (
        0.0,
        1.0,
    )  # refreshed every 30 s

    sent = len(flow.twilio.accepted)
    status, decided = await api(
        flow, "POST", f"/api/staff-requests/{request['id']}/approve", {"by": "alice"}
    )
    assert status == 200, decided
    assert decided["request"]["state"] == "approved" and decided["patient_texted"] is True
    news = (await flow.texts(sent + 1))[-1].body
    assert "as you asked" in news and "no longer booked" in news and SCHEDULING_PHONE in news
    [after] = await flow.fetch(
        "SELECT status, phi FROM appointments WHERE appointment_id = $1", appointment_id
    )
    assert after["status"] == "cancelled" and after["phi"] is None
    # The decision is audited, and the number sealed in the request is gone with it.
    [kept] = await flow.fetch("SELECT decided_by, phi FROM staff_requests")
    assert kept["decided_by"] == "alice" and kept["phi"] is None
    audit = await flow.fetch(
        "SELECT changed_by, new_value FROM config_audit WHERE item = $1",
        f"appointment:{appointment_id}",
    )
    assert [tuple(r) for r in audit] == [("alice", "approved")]
    # Deciding again is refused.
    status, again = await api(
        flow, "POST", f"/api/staff-requests/{request['id']}/approve", {"by": "bob"}
    )
    assert status == 409 and again["error"]["code"] == "already_decided"


async def test_stop_opts_out_at_once_and_leaves_the_appointment_to_staff(flow: Flow) -> None:
    patient = Patient()
    await book_by_text(flow, patient)
    goodbye = await converse(flow, patient, "STOP")
    assert "no more texts" in goodbye
    [request] = await pending(flow)
    assert request["kind"] == "opted_out"
    [row] = await flow.fetch("SELECT status FROM appointments")
    assert row["status"] == "booked"  # never a silent cancel
    sent = len(flow.twilio.accepted)
    status, decided = await api(
        flow, "POST", f"/api/staff-requests/{request['id']}/deny", {"by": "alice", "note": "kept"}
    )
    assert status == 200 and decided["patient_texted"] is False
    assert len(flow.twilio.accepted) == sent  # nothing to a phone that opted out


async def test_a_reply_for_two_appointments_goes_to_staff(flow: Flow) -> None:
    patient = Patient()
    await book_by_text(flow, patient)
    await book_by_text(flow, patient, order_id=new_order_id())
    assert len(await flow.fetch("SELECT 1 FROM appointments")) == 2
    taken = await converse(flow, patient, "3")
    assert "scheduling team" in taken
    [request] = await pending(flow)
    assert request["kind"] == "unclear" and request["appointment_id"] is None
    status, refused = await api(
        flow, "POST", f"/api/staff-requests/{request['id']}/approve", {"by": "alice"}
    )
    assert status == 409 and refused["error"]["code"] == "needs_a_person"
    sent = len(flow.twilio.accepted)
    status, _ = await api(
        flow, "POST", f"/api/staff-requests/{request['id']}/deny", {"by": "alice"}
    )
    assert status == 200
    asked = (await flow.texts(sent + 1))[-1].body
    assert "Please call" in asked and SCHEDULING_PHONE in asked
    assert {r["status"] for r in await flow.fetch("SELECT status FROM appointments")} == {"booked"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_requests_command(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> None:
    port = _free_port()
    async with start_flow(
        database_url, data_dir, twilio, clock, api_keys=KEY, http_listen=f"127.0.0.1:{port}"
    ) as flow:
        patient = Patient()
        await book_by_text(flow, patient)
        await converse(flow, patient, "3")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "RADSCHED_DATA_DIR": str(data_dir),
            "RADSCHED_DATABASE_URL": database_url,
            "RADSCHED_HTTP_LISTEN": f"127.0.0.1:{port}",
            "RADSCHED_API_KEYS": KEY,
        }

        def radsched(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "radsched", *argv],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        listed = await asyncio_to_thread(radsched, "requests", "list")
        assert listed.returncode == 0, listed.stderr
        assert " cancel " in listed.stdout and "pending" in listed.stdout
        [request] = await pending(flow)
        missing_by = await asyncio_to_thread(
            radsched, "requests", "deny", str(request["id"]), "--by", " "
        )
        assert missing_by.returncode == 2 and "--by" in missing_by.stderr
        denied = await asyncio_to_thread(
            radsched, "requests", "deny", str(request["id"]), "--by", "carol", "--note", "full day"
        )
        assert denied.returncode == 0, denied.stderr
        assert '"state": "denied"' in denied.stdout
        assert await pending(flow) == []


async def asyncio_to_thread(func: Any, *args: str) -> subprocess.CompletedProcess[str]:
    import asyncio

    result: subprocess.CompletedProcess[str] = await asyncio.to_thread(func, *args)
    return result


async def test_an_undecided_request_forgets_the_number_when_the_appointment_does(
    flow: Flow,
) -> None:
    from datetime import timedelta

    from radsched.retention import policy_from, run_job

    patient = Patient()
    await book_by_text(flow, patient)
    await converse(flow, patient, "3")
    [row] = await flow.fetch("SELECT phi FROM staff_requests")
    assert row["phi"] is not None
    [appointment] = await flow.fetch("SELECT phi_expires_at FROM appointments")
    report = await run_job(
        flow.daemon.db,
        appointment["phi_expires_at"] + timedelta(minutes=1),
        policy_from(30),
        wait=True,
        only_if_due=False,
    )
    assert report.removed["staff request PHI"] == 1
    [row] = await flow.fetch("SELECT phi, state FROM staff_requests")
    assert row["phi"] is None and row["state"] == "pending"
