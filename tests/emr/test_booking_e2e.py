"""End to end: a booking through the REST facade on the in-process simulated RIS reaches the EMR as
SIU^S12, built from the stored order, committed with the booking and sent after commit."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import aiohttp

from channels import OrderRef, PatientName
from channels import parse as parse_hl7
from mllp.testing import LoopbackPeer
from radsched.daemon import running
from tests.channels.hl7check import assert_valid_hl7
from tests.emr.helpers import settings

KEY = "emr-test-key-0123456789"


async def test_rest_booking_sends_siu_to_the_routed_emr(data_dir: Path, database_url: str) -> None:
    async with LoopbackPeer() as emr:
        cfg = settings(
            data_dir, database_url, emr_routes=f"HOSP=127.0.0.1:{emr.port};qie-2.3", api_keys=KEY
        )
        async with running(cfg) as daemon, aiohttp.ClientSession() as http:
            order = OrderRef(
                order_id="PLC777001",
                mrn="MRN777001",
                placer_order_id="PLC777001",
                procedure_code="74177",
                procedure_text="CT ABD/PELVIS W CONTRAST",
                procedure_system="C4",
                modality="CT",
                name=PatientName("TESTPATIENT", "BRAVO"),
                sex="M",
            )
            async with daemon.db.transaction("test.order") as conn:
                await daemon.orders.insert(
                    conn,
                    order,
                    source="api",
                    facility="HOSP",
                    phone="+15555550123",
                    correlation_id="test",
                    received_at=daemon.clock(),
                )
            base = f"http://{daemon.listening['http']}"
            headers = {"X-API-Key": KEY}
            async with http.get(
                base + "/api/ris/locations", params={"modality": "CT"}, headers=headers
            ) as r:
                assert r.status == 200
                location = (await r.json())["locations"][0]["id"]
            today = datetime.now(daemon.tz).date().isoformat()
            params = {"location": location, "modality": "CT", "date": today, "days": "7"}
            async with http.get(
                base + "/api/ris/available-slots", params=params, headers=headers
            ) as r:
                assert r.status == 200
                slot = (await r.json())["slots"][0]
            body = {
                "order_id": "PLC777001",
                "mrn": "MRN777001",
                "modality": "CT",
                "location": location,
                "slot_id": slot["id"],
            }
            async with http.post(
                base + "/api/ris/book-appointment", json=body, headers=headers
            ) as r:
                assert r.status == 201, await r.text()
                booked = await r.json()
            # The same request again is idempotent: no second SIU.
            async with http.post(
                base + "/api/ris/book-appointment", json=body, headers=headers
            ) as r:
                assert r.status == 201

            frames = await emr.wait_for_frames(1)
            assert_valid_hl7(frames[0])
            msg = parse_hl7(frames[0])
            assert (msg.message_type, msg.trigger, msg.version) == ("SIU", "S12", "2.3")
            sch, pid = msg.first("SCH"), msg.first("PID")
            assert sch is not None and pid is not None
            assert sch.get(1) == booked["appointment"]["id"]
            assert pid.get(3) == "MRN777001"
            async with daemon.db.transaction("test.check") as conn:
                count = await conn.fetchval("SELECT count(*) FROM hl7_outbox")
            assert count == 1
            assert len(emr.received) == 1
