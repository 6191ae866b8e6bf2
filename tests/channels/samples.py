"""Shared sample values for the channels tests: deterministic clock and ids, a requester and a simulated RIS."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from channels import (
    Appointment,
    Dialect,
    Location,
    OrderRef,
    Party,
    PatientName,
    Slot,
    fixed_clock,
    get_dialect,
    sequential_control_ids,
)

TZ = ZoneInfo("America/New_York")
NOW = datetime(2025, 1, 14, 9, 0, tzinfo=TZ)
DIALECT_NAMES = ("ch10-2.5.1", "qie-2.3")
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

US = Party("RADSCHED", "RADSCHED")
RIS = Party("SYNAPSERIS", "RADCO")
EMR = Party("EPIC", "HOSP")

LOCATIONS = [
    Location("DTWN", "Downtown Imaging", "100 Test St, Springfield, IL", ("CT", "MR", "US")),
    Location("NRTH", "North Imaging Center; Suite 2", "200 Sample Ave|Unit 5", ("CT", "CR", "DX")),
]
SLOTS = [
    Slot("SLOT-7001", "DTWN", "CT", datetime(2025, 1, 15, 8, 30, tzinfo=TZ), 30),
    Slot("SLOT-7002", "DTWN", "CT", datetime(2025, 1, 15, 10, 0, tzinfo=TZ), 45),
]
ORDER = OrderRef(
    order_id="PLC100045",
    mrn="MRN00001",
    placer_order_id="PLC100045",
    filler_order_id="ACC00012345",
    procedure_code="74177",
    procedure_text="CT ABD/PELVIS W CONTRAST",
    procedure_system="C4",
    modality="CT",
    name=PatientName("TESTPATIENT", "ALPHA", "Q"),
    date_of_birth=date(1980, 1, 1),
    sex="F",
)
APPOINTMENT = Appointment(
    id="SMS-APT-0001",
    order_id="PLC100045",
    slot=SLOTS[0],
    location=LOCATIONS[0],
    procedure_code="74177",
    procedure_text="CT ABD/PELVIS W CONTRAST",
    procedure_system="C4",
    filler_appointment_id="FIL-APT-9001",
    confirmation_code="K7Q2",
)
WINDOW = (
    datetime(2025, 1, 15, 7, 0, tzinfo=TZ),
    datetime(2025, 1, 15, 7, 0, tzinfo=TZ) + timedelta(days=2),
)


def _dialect(
    name: str, overrides: dict[str, object] | None, local: Party, remote: Party, prefix: str
) -> Dialect:
    return get_dialect(
        name,
        overrides,
        local=local,
        remote=remote,
        tz=TZ,
        clock=fixed_clock(NOW),
        control_ids=sequential_control_ids(prefix),
    )


def requester(name: str, overrides: dict[str, object] | None = None) -> Dialect:
    """The daemon's side: control ids Q000001, Q000002, ..."""
    return _dialect(name, overrides, US, RIS, "Q")


def responder(name: str, overrides: dict[str, object] | None = None) -> Dialect:
    """The simulated RIS: control ids R000001, ..."""
    return _dialect(name, overrides, RIS, US, "R")
