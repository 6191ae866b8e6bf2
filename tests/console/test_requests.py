"""The console's Requests page through a real daemon: the request made by the real path (booked by
text, the patient replies 3), decided on the page through the daemon's StaffDesk (the RIS cancels
through the simulated RIS, the patient's text goes to the Twilio double)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from radsched.simris import SimRis, default_calendar
from tests.console.helpers import csrf_of, login, make_user
from tests.smsflow import conftest as smsflow
from tests.smsflow.conftest import Clock, Flow, Patient, start_flow
from tests.smsflow.test_conversation import book_by_text, converse, new_order_id
from tests.twilio_double import TwilioDouble

APPROVE = "Approve "


# The SMS flow's fixtures: its Twilio double, and its clock (a Monday outside quiet hours) over the
# console tests' own.
twilio = smsflow.twilio
clock = smsflow.clock
Start = Callable[..., AbstractAsyncContextManager[Flow]]


@pytest.fixture
def start(database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock) -> Start:
    """A real daemon with its console listener, on the SMS flow's clock and Twilio double."""

    def started(**overrides: Any) -> AbstractAsyncContextManager[Flow]:
        return start_flow(
            database_url, data_dir, twilio, clock, admin_listen="127.0.0.1:0", **overrides
        )

    return started


@asynccontextmanager
async def console(flow: Flow, name: str, role: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A logged-in browser-like session on the daemon's own console listener."""
    addr = flow.daemon.listening["admin"]
    async with aiohttp.ClientSession(
        base_url=f"http://{addr.host}:{addr.port}", cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as session:
        await make_user(flow.daemon.db, name, role, clock=flow.clock)
        assert (await login(session, name)).status == 303  # type: ignore[arg-type]
        yield session


async def decide(
    session: aiohttp.ClientSession, request_id: int, action: str, **form: str
) -> tuple[int, str]:
    token = await csrf_of(session, "/requests")  # type: ignore[arg-type]
    async with session.post(
        f"/requests/{request_id}/{action}", data={"csrf": token, **form}, allow_redirects=False
    ) as resp:
        return resp.status, await resp.text()


async def requests_of(flow: Flow) -> list[Any]:
    return await flow.fetch("SELECT * FROM staff_requests ORDER BY id")


async def console_audit(flow: Flow, action: str) -> list[Any]:
    return await flow.fetch(
        "SELECT actor, target, old_value, new_value, note FROM console_audit WHERE action = $1",
        action,
    )


async def test_operator_approves_on_the_page_and_the_patient_is_texted(
    start: Start, clock: Clock
) -> None:
    async with start(staff_request_overdue_min=5) as flow:
        patient = Patient()
        await book_by_text(flow, patient)
        [appointment] = await flow.fetch("SELECT appointment_id FROM appointments")
        appointment_id = appointment["appointment_id"]
        await converse(flow, patient, "3")
        [request] = await requests_of(flow)
        rid = request["id"]
        clock.advance(minutes=6)  # past STAFF_REQUEST_OVERDUE_MIN

        # A viewer sees the request and its age, with nothing to press, and the server refuses them.
        async with console(flow, "v", "viewer") as viewer:
            html = await (await viewer.get("/requests")).text()
            assert f'id="r-{rid}"' in html and appointment_id in html and "replied 3" in html
            assert "overdue" in html and "6 min" in html and APPROVE not in html
            for phi in (patient.e164, patient.e164[2:], patient.mrn, patient.family, patient.dob):
                assert phi not in html
            overview = await (await viewer.get("/")).text()
            assert "1 pending" in overview and "1 overdue" in overview
            status, refused = await decide(viewer, rid, "approve")
            assert status == 403 and "operator role" in refused
        assert (await requests_of(flow))[0]["state"] == "pending"

        async with console(flow, "op", "operator") as op:
            page = await (await op.get("/requests")).text()
            assert f"{APPROVE}{rid}: cancel {appointment_id}" in page and "No patient data" in page
            # Without the form's CSRF token: refused, nothing decided, nothing sent.
            sent = len(flow.twilio.accepted)
            async with op.post(f"/requests/{rid}/approve", data={"note": "x"}) as forged:
                assert forged.status == 403 and "Form refused" in await forged.text()
            assert (await requests_of(flow))[0]["state"] == "pending"

            status, done = await decide(op, rid, "approve", note="patient asked, slot freed")
            assert status == 200, done
            assert f"Request {rid} approved" in done and "cancelled at the RIS" in done
            assert "patient was texted" in done
            news = (await flow.texts(sent + 1))[-1]
            assert news.to == patient.e164 and "no longer booked" in news.body
            [after] = await flow.fetch(
                "SELECT status FROM appointments WHERE appointment_id = $1", appointment_id
            )
            assert after["status"] == "cancelled"
            # Listed as decided, by whom and with the note; the overview has nothing pending.
            assert f'id="d-{rid}"' in done and "patient asked, slot freed" in done
            assert f'id="r-{rid}"' not in done
            assert "0 pending" in await (await op.get("/")).text()
            [decided] = await requests_of(flow)
            assert (decided["state"], decided["decided_by"]) == ("approved", "op")
            assert await console_audit(flow, "request_approve") == [
                ("op", f"staff_request:{rid}", "pending", "approved", "patient asked, slot freed")
            ]
            # Twice: the page says so, and only one text went out.
            status, again = await decide(op, rid, "approve")
            assert status == 409 and f"request {rid} is approved" in again
            assert len(flow.twilio.accepted) == sent + 1


async def test_a_reply_for_two_appointments_needs_a_person_then_is_denied(
    start: Start, clock: Clock
) -> None:
    async with start() as flow:
        patient = Patient()
        await book_by_text(flow, patient)
        await book_by_text(flow, patient, order_id=new_order_id())
        await converse(flow, patient, "3")
        [request] = await requests_of(flow)
        rid = request["id"]
        async with console(flow, "op", "operator") as op:
            page = await (await op.get("/requests")).text()
            assert f"Deny {rid}" in page and APPROVE not in page  # no single appointment
            status, refused = await decide(op, rid, "approve")
            assert status == 409 and "names no single appointment" in refused
            sent = len(flow.twilio.accepted)
            status, done = await decide(op, rid, "deny", note="called, keeps both")
            assert status == 200 and f"Request {rid} denied" in done
            assert "Please call" in (await flow.texts(sent + 1))[-1].body
            # Control characters are refused before anything is decided.
            assert (await decide(op, rid, "deny", note="a\x01b"))[0] == 400
        assert {r["status"] for r in await flow.fetch("SELECT status FROM appointments")} == {
            "booked"
        }
        audit = await console_audit(flow, "request_approve")
        assert [(a["new_value"], a["note"]) for a in audit] == [
            ("refused: needs_a_person", audit[0]["note"])
        ]
        assert "names no single appointment" in audit[0]["note"]


async def test_the_ris_refusing_the_cancel_is_shown_and_the_request_stays_pending(
    start: Start, clock: Clock
) -> None:
    async with SimRis(default_calendar(clock=clock)) as sim:
        await sim.start()
        async with start(ris_addr=f"127.0.0.1:{sim.port}") as flow:
            patient = Patient()
            await book_by_text(flow, patient)
            await converse(flow, patient, "3")
            [request] = await requests_of(flow)
            sim.set_faults(refuse_changes=True)
            async with console(flow, "op", "operator") as op:
                sent = len(flow.twilio.accepted)
                status, page = await decide(op, request["id"], "approve")
                assert status == 409, page
                assert "still booked" in page and "Exam already in progress" in page
                assert f'id="r-{request["id"]}"' in page  # still pending, still listed
            assert len(flow.twilio.accepted) == sent
            assert (await requests_of(flow))[0]["state"] == "pending"
            [audit] = await console_audit(flow, "request_approve")
            assert audit["new_value"] == "refused: change_refused"
