"""Helpers for the EMR outbox tests: settings for real daemons, bookings, and EMR peers that behave
like EMRs (parse the SIU, answer AA/AE/AR echoing MSH-10 in MSA-2)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from channels import Appointment, Location, OrderRef, PatientName, Slot
from channels import parse as parse_hl7
from mllp.testing import control_id
from radsched.daemon import Daemon
from radsched.settings import Settings
from tests.waiting import eventually  # noqa: F401 - re-exported for the EMR tests

PHONE_KEY = "a" * 64
PHI_KEY = "b" * 64
FAST_RETRY = {"emr_retry_initial_s": 0.05, "emr_retry_max_s": 0.2}


def settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": SecretStr(database_url),
        "http_listen": "127.0.0.1:0",
        "mllp_listen": "127.0.0.1:0",
        "phone_hash_key": SecretStr(PHONE_KEY),
        "phi_key": SecretStr(PHI_KEY),
        "emr_ack_timeout_s": 2.0,
        **FAST_RETRY,
    }
    values.update(overrides)
    return Settings(**values)


def env(database_url: str, **extra: str) -> dict[str, str]:
    """Environment for a subprocess daemon on the test database."""
    return {
        "RADSCHED_DATABASE_URL": database_url,
        "RADSCHED_PHONE_HASH_KEY": PHONE_KEY,
        "RADSCHED_PHI_KEY": PHI_KEY,
        "RADSCHED_EMR_ACK_TIMEOUT_S": "2",
        "RADSCHED_EMR_RETRY_INITIAL_S": "0.05",
        "RADSCHED_EMR_RETRY_MAX_S": "0.2",
        **extra,
    }


@dataclass(frozen=True)
class Booked:
    """Shaped like radsched.scheduling.service.BookedAppointment (what the booking hook receives)."""

    booking_id: uuid.UUID
    order: OrderRef
    facility: str | None
    appointment: Appointment
    replayed: bool = False


def booked(n: int, *, facility: str | None = "HOSP") -> Booked:
    start = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    slot = Slot(f"SLOT{n:05d}", "DTWN", "CT", start, 30)
    order = OrderRef(
        order_id=f"PLC{n:06d}",
        mrn=f"MRN{n:06d}",
        placer_order_id=f"PLC{n:06d}",
        filler_order_id=f"ACC{n:06d}",
        procedure_code="74177",
        procedure_text="CT ABD/PELVIS W CONTRAST",
        procedure_system="C4",
        modality="CT",
        name=PatientName("TESTPATIENT", "ALPHA"),
        date_of_birth=date(1980, 1, 1),
        sex="F",
    )
    appointment = Appointment(
        id=f"APT{n:06d}",
        order_id=order.order_id,
        slot=slot,
        location=Location("DTWN", "Downtown Imaging", "1 Main St", ("CT",)),
        filler_appointment_id=f"FIL{n:06d}",
        confirmation_code="ABC234",
    )
    return Booked(uuid.uuid4(), order, facility, appointment)


async def book(daemon: Daemon, *items: Booked) -> None:
    """Run the booking hook the way the scheduling service does: inside its own transaction."""
    assert daemon.emr is not None
    async with daemon.db.transaction("test.booking") as conn:
        for item in items:
            await daemon.emr.writer.on_booked(conn, item)


def reply_with(code: str) -> Callable[[bytes], bytes]:
    """An EMR answering ``code`` to every SIU, MSA-2 echoing MSH-10 (as real EMRs do)."""

    def reply(payload: bytes) -> bytes:
        cid = control_id(payload)
        return (
            b"MSH|^~\\&|EMR|HOSP|RADSCHED|RADSCHED|20261127100000||ACK^S12^ACK|A"
            + cid
            + b"|P|2.5.1\rMSA|"
            + code.encode()
            + b"|"
            + cid
            + b"|Patient MRN000123 unknown\r"
        )

    return reply


def appointment_ids(frames: list[bytes]) -> list[str]:
    out = []
    for frame in frames:
        sch = parse_hl7(frame).first("SCH")
        assert sch is not None
        out.append(sch.get(1))
    return out
