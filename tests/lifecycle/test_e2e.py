"""End to end through a real daemon, the simulated RIS on loopback and an EMR peer, in both dialects:
book -> cancel / reschedule through the REST facade, the HL7 at the RIS, the SIU at the EMR after the S12,
idempotent repeats, refusals, and changes made by staff in the RIS."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import mllp
from channels import (
    Appointment,
    Location,
    OrderRef,
    Party,
    PatientName,
    Slot,
    build_siu,
    parse,
    parse_siu,
)
from mllp.testing import LoopbackPeer
from radsched.daemon import Daemon, running
from radsched.simris import SimRis, default_calendar
from tests.channels.hl7check import assert_valid_hl7
from tests.emr.helpers import env, eventually, settings
from tests.ris.openapi_check import OpenApiChecker

KEY = "lifecycle-key-0123456789"
DIALECTS = ["ch10-2.5.1", "qie-2.3"]


@dataclass
class World:
    daemon: Daemon
    sim: SimRis
    emr: LoopbackPeer
    http: aiohttp.ClientSession
    base: str
    checker: OpenApiChecker

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.request(
            method, self.base + path, headers={"X-API-Key": KEY}, **kw
        ) as r:
            body = await r.json()
            # The checker knows the documented path, not the filled-in template.
            documented = (
                "/api/ris/appointments/{appointment_id}"
                if path.startswith("/api/ris/appointments/")
                else path
            )
            self.checker.check(method, documented, r.status, r.content_type, body)
            return r.status, body

    async def order(self, order_id: str, *, sender: str | None = None) -> None:
        ref = OrderRef(
            order_id=order_id,
            mrn="MRN" + order_id,
            placer_order_id=order_id,
            filler_order_id="ACC" + order_id,
            procedure_code="74177",
            procedure_text="CT ABD/PELVIS W CONTRAST",
            procedure_system="C4",
            modality="CT",
            name=PatientName("TESTPATIENT", "ALPHA"),
            sex="F",
        )
        async with self.daemon.db.transaction("test.order") as conn:
            await self.daemon.orders.insert(
                conn,
                ref,
                source="api",
                facility="HOSP",
                phone="+15555550123",
                correlation_id="test",
                received_at=self.daemon.clock(),
                sender=sender,
            )

    async def open_slots(self, count: int = 3) -> list[dict[str, Any]]:
        day = (datetime.now(self.daemon.tz) + timedelta(days=1)).date()
        while day.weekday() >= 5:
            day += timedelta(days=1)
        params = {"location": "DTWN", "modality": "CT", "date": day.isoformat(), "days": "3"}
        status, body = await self.call("GET", "/api/ris/available-slots", params=params)
        assert status == 200, body
        return list(body["slots"][:count])

    async def book(
        self, order_id: str, slot: dict[str, Any], *, sender: str | None = None
    ) -> dict[str, Any]:
        await self.order(order_id, sender=sender)
        body = {
            "order_id": order_id,
            "mrn": "MRN" + order_id,
            "modality": "CT",
            "location": slot["location"],
            "slot_id": slot["id"],
        }
        status, answer = await self.call("POST", "/api/ris/book-appointment", json=body)
        assert status == 201, answer
        return dict(answer["appointment"])

    def ris_frames(self, kind: str) -> list[str]:
        return self.sim.frames_of(kind)


@asynccontextmanager
async def world(
    data_dir: Path,
    database_url: str,
    dialect: str,
    *,
    sim: SimRis | None = None,
    emr: LoopbackPeer | None = None,
    **overrides: Any,
) -> AsyncIterator[World]:
    """A daemon on ``dialect`` with a simulated RIS and an EMR peer (started here unless given)."""
    async with AsyncExitStack() as stack:
        if sim is None:
            sim = SimRis(default_calendar(clock=lambda: datetime.now(UTC)))
            await sim.start()
            stack.push_async_callback(sim.aclose)
        if emr is None:
            emr = await stack.enter_async_context(LoopbackPeer())
        cfg = settings(
            data_dir,
            database_url,
            **{
                "emr_routes": f"*=127.0.0.1:{emr.port};{dialect}",
                "api_keys": KEY,
                "ris_addr": f"127.0.0.1:{sim.port}",
                "ris_dialect": dialect,
                "ris_timeout_s": 5.0,
                **overrides,
            },
        )
        daemon = await stack.enter_async_context(running(cfg))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        base = f"http://{daemon.listening['http']}"
        async with http.get(base + "/api/openapi.json") as r:
            checker = OpenApiChecker(await r.json())
        yield World(daemon, sim, emr, http, base, checker)


def _sch(payload: bytes) -> tuple[str, str, str]:
    siu = parse_siu(payload)
    return siu.trigger, siu.placer_appointment_id, siu.filler_appointment_id


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_book_then_cancel(data_dir: Path, database_url: str, dialect: str) -> None:
    async with world(data_dir, database_url, dialect) as w:
        slot = (await w.open_slots(1))[0]
        appointment = await w.book("PLC9001", slot)
        [s12] = await w.emr.wait_for_frames(1)
        status, body = await w.call(
            "POST",
            "/api/ris/cancel-appointment",
            json={"appointment_id": appointment["id"], "reason": "Patient request"},
        )
        assert status == 200, body
        assert body["status"] == "cancelled" and body["appointment"]["status"] == "cancelled"
        cancel_kind = "SRM^S04" if dialect == "ch10-2.5.1" else "ORM^O01"
        request, _ = w.sim.exchanges[-1]
        assert f"{parse(request).message_type}^{parse(request).trigger}" == cancel_kind
        assert slot["id"] not in w.sim.bookings  # freed at the RIS
        frames = await w.emr.wait_for_frames(2)
        assert frames[0] == s12
        assert_valid_hl7(frames[1])
        trigger, placer, filler = _sch(frames[1])
        assert trigger == "S15"
        assert (placer, filler) == _sch(s12)[1:]
        assert parse_siu(frames[1]).filler_status.startswith("Cancelled")
        # A repeat: the same answer, no second HL7 request, no second S15.
        sent = len(w.sim.received)
        again = await w.call(
            "POST", "/api/ris/cancel-appointment", json={"appointment_id": appointment["id"]}
        )
        assert again == (200, body)
        assert len(w.sim.received) == sent
        status, record = await w.call("GET", f"/api/ris/appointments/{appointment['id']}")
        assert status == 200 and record["appointment"]["status"] == "cancelled"
        # The freed slot is offered again.
        assert slot["id"] in [s["id"] for s in await w.open_slots(50)]
        assert len(w.emr.received) == 2
        async with w.http.get(w.base + "/metrics") as r:
            metrics = await r.text()
        assert (
            'radsched_appointment_changes_total{kind="cancel",origin="rest",outcome="done"} 1.0'
            in metrics
        )
        assert (
            'radsched_appointment_changes_total{kind="cancel",origin="rest",outcome="replayed"}'
            in metrics
        )


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_book_then_reschedule(data_dir: Path, database_url: str, dialect: str) -> None:
    async with world(data_dir, database_url, dialect) as w:
        first, second, _ = await w.open_slots(3)
        appointment = await w.book("PLC9002", first)
        await w.emr.wait_for_frames(1)
        body = {"appointment_id": appointment["id"], "slot_id": second["id"]}
        status, answer = await w.call("POST", "/api/ris/reschedule-appointment", json=body)
        assert status == 200, answer
        assert answer["status"] == "rescheduled" and answer["confirmation_code"]
        assert answer["appointment"]["start"] == second["start"]
        assert first["id"] not in w.sim.bookings and second["id"] in w.sim.bookings
        frames = await w.emr.wait_for_frames(2)
        assert_valid_hl7(frames[1])
        siu = parse_siu(frames[1])
        assert siu.trigger == "S13"
        assert siu.start is not None
        assert siu.start.isoformat() == datetime.fromisoformat(second["start"]).isoformat()
        sent = len(w.sim.received)
        assert await w.call("POST", "/api/ris/reschedule-appointment", json=body) == (200, answer)
        assert len(w.sim.received) == sent


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_refusals_are_409_and_the_appointment_stands(
    data_dir: Path, database_url: str, dialect: str
) -> None:
    async with world(data_dir, database_url, dialect) as w:
        first, second = await w.open_slots(2)
        appointment = await w.book("PLC9003", first)
        await w.book("PLC9004", second)
        # The slot is taken.
        body = {"appointment_id": appointment["id"], "slot_id": second["id"]}
        status, answer = await w.call("POST", "/api/ris/reschedule-appointment", json=body)
        assert status == 409, answer
        # The RIS refuses to cancel (exam begun): 409 with the RIS's reason.
        w.sim.set_faults(refuse_changes=True)
        status, answer = await w.call(
            "POST", "/api/ris/cancel-appointment", json={"appointment_id": appointment["id"]}
        )
        assert status == 409 and "Exam already in progress" in answer["error"]["message"]
        status, record = await w.call("GET", f"/api/ris/appointments/{appointment['id']}")
        assert record["appointment"]["status"] == "booked"
        assert record["appointment"]["slot_id"] == first["id"]
        assert first["id"] in w.sim.bookings
        status, answer = await w.call(
            "POST", "/api/ris/cancel-appointment", json={"appointment_id": "RSNOSUCH"}
        )
        assert status == 404 and answer["error"]["code"] == "unknown_appointment"


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_staff_changes_in_the_ris(data_dir: Path, database_url: str, dialect: str) -> None:
    async with world(data_dir, database_url, dialect) as w:
        first, second, other = await w.open_slots(3)
        moved = await w.book("PLC9005", first)
        cancelled = await w.book("PLC9006", other)
        await w.emr.wait_for_frames(2)
        w.sim.notify = (w.daemon.listening["mllp"].host, w.daemon.listening["mllp"].port)
        result = await w.sim.staff_move(moved["id"], second["id"])
        assert result["ack"] == "AA"
        result = await w.sim.staff_cancel(cancelled["id"])
        assert result["ack"] == "AA"

        async def updated() -> bool:
            _, a = await w.call("GET", f"/api/ris/appointments/{moved['id']}")
            _, b = await w.call("GET", f"/api/ris/appointments/{cancelled['id']}")
            return bool(
                a["appointment"]["status"] == "rescheduled"
                and b["appointment"]["status"] == "cancelled"
            )

        await eventually(updated, what="the record follows the RIS")
        _, record = await w.call("GET", f"/api/ris/appointments/{moved['id']}")
        assert record["appointment"]["start"] == second["start"]
        # Relayed to the EMR once each (after the two S12s).
        frames = await w.emr.wait_for_frames(4)
        assert sorted(parse_siu(f).trigger for f in frames[2:]) == ["S13", "S15"]
        # A cancel asked of an appointment the RIS already cancelled answers from the record.
        status, again = await w.call(
            "POST", "/api/ris/cancel-appointment", json={"appointment_id": cancelled["id"]}
        )
        assert status == 200 and again["status"] == "cancelled"


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_no_show_at_the_ris_is_recorded_once_and_still_relayed(
    data_dir: Path, database_url: str, dialect: str
) -> None:
    async with world(data_dir, database_url, dialect) as w:
        missed, marked = await w.open_slots(2)
        missed = await w.book("PLC9007", missed)
        marked = await w.book("PLC9008", marked)
        await w.emr.wait_for_frames(2)
        w.sim.notify = (w.daemon.listening["mllp"].host, w.daemon.listening["mllp"].port)
        # Staff mark the no-show twice (the second S26 has its own MSH-10, like a RIS resending).
        for _ in range(2):
            result = await w.sim.staff_noshow(missed["id"])
            assert (result["sent"], result["ack"]) == ("SIU^S26", "AA")
        # A RIS that sends no S26 says it in an S14: SCH-25 Noshow.
        _, record = await w.call("GET", f"/api/ris/appointments/{marked['id']}")
        version = "2.5.1" if dialect == "ch10-2.5.1" else "2.3"
        s14 = build_siu(
            Appointment(
                marked["id"],
                "PLC9008",
                Slot(
                    record["appointment"]["slot_id"],
                    "DTWN",
                    "CT",
                    datetime.fromisoformat(record["appointment"]["start"]),
                    record["appointment"]["duration_minutes"],
                ),
                Location("DTWN", "", "", ("CT",)),
                filler_appointment_id=record["appointment"]["filler_appointment_id"],
            ),
            OrderRef(order_id="PLC9008", mrn="MRNPLC9008", modality="CT"),
            version=version,
            sender=Party("SIMRIS", "RIS"),
            receiver=Party("RADSCHED", "RADSCHED"),
            trigger="S14",
            filler_status="Noshow",
        )
        addr = w.daemon.listening["mllp"]
        async with mllp.Client(addr.host, addr.port) as client:
            assert b"MSA|AA|" in await client.request(s14.payload, timeout=5)

        # The EMR still gets every SIU, as the RIS sent it.
        frames = await w.emr.wait_for_frames(5)
        assert [parse_siu(f).trigger for f in frames[2:]] == ["S26", "S26", "S14"]
        for frame in frames[2:4]:
            assert_valid_hl7(frame)
            assert parse_siu(frame).filler_status == "Noshow"
        async with w.daemon.db.transaction("test.events") as conn:
            events = await conn.fetch(
                "SELECT appointment_id, origin FROM appointment_events WHERE kind = 'noshow'"
                " ORDER BY id"
            )
        assert [tuple(e) for e in events] == [(missed["id"], "ris"), (marked["id"], "ris")]
        # The appointment itself stands (a later move by the RIS is still followed).
        _, record = await w.call("GET", f"/api/ris/appointments/{missed['id']}")
        assert record["appointment"]["status"] == "booked"
        async with w.http.get(w.base + "/metrics") as r:
            metrics = await r.text()
        assert (
            'radsched_appointment_changes_total{kind="ris_noshow",origin="ris",outcome="done"} 2.0'
            in metrics
        )
        assert (
            'radsched_appointment_changes_total{kind="ris_noshow",origin="ris",outcome="replayed"}'
            " 1.0" in metrics
        )


async def test_cli_show_and_cancel_audited(data_dir: Path, database_url: str) -> None:
    async with world(data_dir, database_url, "ch10-2.5.1") as w:
        appointment = await w.book("PLC9010", (await w.open_slots(1))[0])
        http = w.daemon.listening["http"]
        environment = {
            **env(database_url),
            "RADSCHED_DATA_DIR": str(data_dir),
            "RADSCHED_HTTP_LISTEN": f"{http.host}:{http.port}",
            "RADSCHED_API_KEYS": KEY,
            "PATH": "/usr/bin:/bin",
        }

        def radsched(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "radsched", "appointment", *args],
                env=environment,
                capture_output=True,
                text=True,
                timeout=60,
            )

        shown = await asyncio.to_thread(radsched, "show", appointment["id"])
        assert shown.returncode == 0, shown.stderr
        record = json.loads(shown.stdout)
        assert record["status"] == "booked" and record["patient_identifiers_until"]
        assert "MRN" not in shown.stdout and "TESTPATIENT" not in shown.stdout
        done = await asyncio.to_thread(
            radsched, "cancel", appointment["id"], "--by", "Dana (support)", "--reason", "Duplicate"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "cancelled"
        missing = await asyncio.to_thread(radsched, "show", "RSNOSUCH")
        assert missing.returncode == 1
        async with w.daemon.db.transaction("test.audit") as conn:
            audit = await conn.fetchrow(
                "SELECT changed_by, old_value, new_value, note FROM config_audit WHERE item = $1",
                f"appointment:{appointment['id']}",
            )
        assert audit is not None
        assert (audit["changed_by"], audit["old_value"], audit["new_value"]) == (
            "Dana (support)",
            "booked",
            "cancelled",
        )
        assert "Duplicate" in audit["note"]


async def test_cancel_while_the_booking_waits_for_the_ris_is_409(
    data_dir: Path, database_url: str
) -> None:
    async with world(data_dir, database_url, "ch10-2.5.1") as w:
        slot = (await w.open_slots(1))[0]
        await w.order("PLC9020")
        w.sim.set_faults(stall=True)  # the RIS books, its answer waits
        body = {
            "order_id": "PLC9020",
            "mrn": "MRNPLC9020",
            "modality": "CT",
            "location": slot["location"],
            "slot_id": slot["id"],
        }
        booking = asyncio.ensure_future(w.call("POST", "/api/ris/book-appointment", json=body))
        await w.sim.wait_for_frames("SRM^S01", 1)
        async with w.daemon.db.transaction("test.pending") as conn:
            appointment_id = await conn.fetchval("SELECT appointment_id FROM bookings")
        status, answer = await w.call(
            "POST", "/api/ris/cancel-appointment", json={"appointment_id": appointment_id}
        )
        assert status == 409 and answer["error"]["code"] == "appointment_conflict"
        w.sim.clear_faults()
        assert (await booking)[0] == 201
        status, answer = await w.call(
            "POST", "/api/ris/cancel-appointment", json={"appointment_id": appointment_id}
        )
        assert status == 200 and answer["status"] == "cancelled"


async def test_an_answer_to_another_control_id_never_cancels(
    data_dir: Path, database_url: str
) -> None:
    async with world(data_dir, database_url, "qie-2.3", ris_timeout_s=1.0) as w:
        slot = (await w.open_slots(1))[0]
        appointment = await w.book("PLC9030", slot)
        w.sim.set_faults(wrong_id=True)  # the RIS cancels but acknowledges another MSH-10
        status, answer = await w.call(
            "POST", "/api/ris/cancel-appointment", json={"appointment_id": appointment["id"]}
        )
        assert status == 502 and answer["error"]["code"] == "ris_error"
        status, record = await w.call("GET", f"/api/ris/appointments/{appointment['id']}")
        assert record["appointment"]["status"] == "booked"  # not applied on a foreign answer
        w.sim.clear_faults()
        # The same request again re-sends the pending cancel with its MSH-10; the RIS answers its
        # original reply (it de-duplicates), and the cancel now lands once.
        status, answer = await w.call(
            "POST", "/api/ris/cancel-appointment", json={"appointment_id": appointment["id"]}
        )
        assert status == 200 and answer["status"] == "cancelled"
        assert w.sim.duplicates == 1


@pytest.mark.parametrize("control", ["CA", "OC", "DC"])
async def test_an_order_cancel_from_the_ris_cancels_the_booked_appointment(
    data_dir: Path, database_url: str, control: str
) -> None:
    async with world(data_dir, database_url, "ch10-2.5.1") as w:
        appointment = await w.book("PLC9040", (await w.open_slots(1))[0])
        await w.emr.wait_for_frames(1)
        orm = (
            "MSH|^~\\&|SYNAPSERIS|RADCO|RADSCHED|RADSCHED|20261201120000||ORM^O01|RIS-ORM-1|P|2.3\r"
            "PID|1||MRNPLC9040^^^RADCO^MR||TESTPATIENT^ALPHA||19800101|F\r"
            f"ORC|{control}|PLC9040|ACCPLC9040||CA\r"
            "OBR|1|PLC9040|ACCPLC9040|74177^CT ABD/PELVIS W CONTRAST^C4||||||||||||||||||||CT\r"
        ).encode()
        mllp_addr = w.daemon.listening["mllp"]
        client = mllp.Client(mllp_addr.host, mllp_addr.port)
        try:
            ack = await client.request(orm, timeout=5)
        finally:
            await client.aclose()
        assert b"MSA|AA|RIS-ORM-1" in ack
        _, record = await w.call("GET", f"/api/ris/appointments/{appointment['id']}")
        assert record["appointment"]["status"] == "cancelled"
        frames = await w.emr.wait_for_frames(2)
        assert parse_siu(frames[1]).trigger == "S15"
        assert_valid_hl7(frames[1])


async def test_an_order_cancel_from_another_sender_leaves_the_appointment_booked(
    data_dir: Path, database_url: str
) -> None:
    # Issue 11 item 4: before, any MLLP peer's ORC-1 CA cancelled the appointment and sent the S15.
    async with world(data_dir, database_url, "ch10-2.5.1") as w:
        slot = (await w.open_slots(1))[0]
        appointment = await w.book("PLC9041", slot, sender="SYNAPSERIS^RADCO")
        await w.emr.wait_for_frames(1)

        def cancel(sender: str, control_id: str) -> bytes:
            return (
                f"MSH|^~\\&|{sender.replace('^', '|')}|RADSCHED|RADSCHED|20261201120000||ORM^O01|"
                f"{control_id}|P|2.3\r"
                "PID|1||MRNPLC9041^^^RADCO^MR||TESTPATIENT^ALPHA||19800101|F\r"
                "ORC|CA|PLC9041|ACCPLC9041||CA\r"
                "OBR|1|PLC9041|ACCPLC9041|74177^CT ABD/PELVIS W CONTRAST^C4||||||||||||||||||||CT\r"
            ).encode()

        mllp_addr = w.daemon.listening["mllp"]
        client = mllp.Client(mllp_addr.host, mllp_addr.port)
        try:
            forged = await client.request(cancel("OTHER^LAB", "EVIL-ORM-1"), timeout=5)
            assert b"MSA|AR|EVIL-ORM-1|cancel refused: not the sender of the order" in forged
            _, record = await w.call("GET", f"/api/ris/appointments/{appointment['id']}")
            assert record["appointment"]["status"] == "booked"
            genuine = await client.request(cancel("SYNAPSERIS^RADCO", "RIS-ORM-2"), timeout=5)
            assert b"MSA|AA|RIS-ORM-2" in genuine
        finally:
            await client.aclose()
        _, record = await w.call("GET", f"/api/ris/appointments/{appointment['id']}")
        assert record["appointment"]["status"] == "cancelled"
        frames = await w.emr.wait_for_frames(2)
        assert [parse_siu(f).trigger for f in frames] == ["S12", "S15"]


async def test_an_appointment_booked_at_the_ris_is_learned_and_followed(
    data_dir: Path, database_url: str
) -> None:
    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "siu"
    async with world(data_dir, database_url, "qie-2.3") as w:
        mllp_addr = w.daemon.listening["mllp"]
        client = mllp.Client(mllp_addr.host, mllp_addr.port)
        try:
            for name in (
                "SIU_S12.relay-from-ris.2.3.hl7",
                "SIU_S15.relay-cancel-from-ris.2.5.1.hl7",
            ):
                data = (fixtures / name).read_bytes().replace(b"\n", b"\r")
                ack = await client.request(data, timeout=5)
                assert b"MSA|AA|" in ack
                if name.startswith("SIU_S12"):
                    _, record = await w.call("GET", "/api/ris/appointments/RIS-APT-0001")
                    assert record["appointment"]["origin"] == "ris"
                    assert record["appointment"]["status"] == "booked"
        finally:
            await client.aclose()
        _, record = await w.call("GET", "/api/ris/appointments/RIS-APT-0001")
        assert record["appointment"]["status"] == "cancelled"
        frames = await w.emr.wait_for_frames(2)
        assert [parse_siu(f).trigger for f in frames] == ["S12", "S15"]  # relayed as before


async def test_concurrent_identical_cancels_share_one_hl7_request(
    data_dir: Path, database_url: str
) -> None:
    async with world(data_dir, database_url, "ch10-2.5.1") as w:
        appointment = await w.book("PLC9050", (await w.open_slots(1))[0])
        body = {"appointment_id": appointment["id"]}
        answers = await asyncio.gather(
            *(w.call("POST", "/api/ris/cancel-appointment", json=body) for _ in range(5))
        )
        assert {status for status, _ in answers} == {200}
        assert len(w.sim.frames_of("SRM^S04")) == 1
