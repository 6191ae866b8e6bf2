"""Typed values exchanged between :mod:`channels` and the daemon. All frozen; no HL7 syntax leaks out.

Datetimes are always timezone-aware. Identifiers are plain strings as they appeared on the wire (first
component of the EI/CX/PL field that carries them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime


class AckCode(enum.StrEnum):
    """MSA-1 (table 0008). AA/AE/AR in original mode; CA/CE/CR are enhanced-mode accept acknowledgements."""

    AA = "AA"
    AE = "AE"
    AR = "AR"
    CA = "CA"
    CE = "CE"
    CR = "CR"

    @property
    def is_success(self) -> bool:
        return self in (AckCode.AA, AckCode.CA)


@dataclass(frozen=True, slots=True)
class Party:
    """An HL7 endpoint as named in MSH-3/4 (us) or MSH-5/6 (the peer)."""

    application: str
    facility: str


DEFAULT_LOCAL = Party("RADSCHED", "RADSCHED")
"""MSH-3/4 of what we send unless configured (the SENDING_APP/SENDING_FACILITY defaults)."""
DEFAULT_REMOTE = Party("RIS", "RIS")


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A built message: its MSH-10 (to correlate the reply with) and the encoded bytes (no MLLP framing)."""

    control_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Location:
    id: str
    name: str
    address: str
    modalities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Slot:
    id: str
    location_id: str
    modality: str
    start: datetime
    duration_minutes: int

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("Slot.start must be timezone-aware")


@dataclass(frozen=True, slots=True)
class PhoneCandidate:
    """One XTN repetition of PID-13/PID-14, as sent. The daemon picks and normalises (phonenumbers).

    2.3 senders put a formatted number in XTN-1 (``(555)555-0123``); 2.5 senders use XTN-5/6/7/8
    (country/area/local/extension) and keep XTN-1 empty. Both are kept; :attr:`number` is the best
    single string to hand to a phone-number parser.
    """

    source: str
    """``"PID-13"`` (home), ``"PID-14"`` (business) or ``"PID-40"`` (2.7+ telecommunication information)."""
    use: str
    """XTN-2 use code (table 0201): PRN, ORN, WPN, NET, ..."""
    equipment: str
    """XTN-3 equipment type (table 0202): PH, CP (mobile), FX, Internet, ..."""
    formatted: str = ""
    """XTN-1 (the 2.3 form)."""
    country: str = ""
    area: str = ""
    local: str = ""
    extension: str = ""
    email: str = ""
    unformatted: str = ""
    """XTN-12 (2.5)."""

    @property
    def is_mobile(self) -> bool:
        return self.equipment.upper() == "CP"

    @property
    def number(self) -> str:
        """Best dialable text: the 2.5 components when present, else XTN-12, else XTN-1."""
        if self.local:
            prefix = f"+{self.country.lstrip('+')}" if self.country else ""
            return f"{prefix}{self.area}{self.local}"
        return self.unformatted or self.formatted


@dataclass(frozen=True, slots=True)
class PatientName:
    family: str
    given: str
    middle: str = ""


@dataclass(frozen=True, slots=True)
class Order:
    """A parsed ORM^O01 from the RIS.

    ``order_id`` is the key the daemon uses: the placer order number (ORC-2, else OBR-2) because that is
    the number the ordering EMR, the RIS and the booking request all share; when a RIS sends no placer number
    (some do for orders entered at the RIS), the filler number (ORC-3, else OBR-3, usually the accession).
    """

    control_id: str
    sending_application: str
    sending_facility: str
    version: str
    order_control: str
    """ORC-1 (table 0119): NW new, CA cancel, XO change, SC status changed, ..."""
    order_status: str
    """ORC-5 (table 0038), may be empty."""
    placer_order_id: str
    filler_order_id: str
    order_id: str
    mrn: str
    """First identifier of PID-3 (preferring the repetition typed MR when one is)."""
    name: PatientName
    date_of_birth: date | None
    sex: str
    phones: tuple[PhoneCandidate, ...]
    modality: str
    """OBR-24 as sent (DICOM code such as CT, MR, US, CR, DX in IHE practice)."""
    procedure_code: str
    procedure_text: str
    procedure_system: str
    facility: str
    """Routing facility; by default MSH-4, configurable per dialect (see docs/dialects.md)."""
    scheduled_start: datetime | None
    """ORC-7.4 (else OBR-27.4, else OBR-36) when the RIS already has a time."""
    z_segments: tuple[str, ...] = ()
    """Z-segments as received (escaped ER7 text), preserved for relay/audit, never interpreted."""

    @property
    def is_cancel(self) -> bool:
        return self.order_control in ("CA", "DC", "OC", "CR")


@dataclass(frozen=True, slots=True)
class OrderRef:
    """What a booking request and an SIU need to know about the order (a subset of :class:`Order`)."""

    order_id: str
    mrn: str
    placer_order_id: str = ""
    filler_order_id: str = ""
    procedure_code: str = ""
    procedure_text: str = ""
    procedure_system: str = ""
    modality: str = ""
    name: PatientName | None = None
    date_of_birth: date | None = None
    sex: str = ""
    mrn_authority: str = ""

    @classmethod
    def from_order(cls, order: Order) -> OrderRef:
        return cls(
            order_id=order.order_id,
            mrn=order.mrn,
            placer_order_id=order.placer_order_id,
            filler_order_id=order.filler_order_id,
            procedure_code=order.procedure_code,
            procedure_text=order.procedure_text,
            procedure_system=order.procedure_system,
            modality=order.modality,
            name=order.name,
            date_of_birth=order.date_of_birth,
            sex=order.sex,
        )


@dataclass(frozen=True, slots=True)
class Appointment:
    """A booked appointment, as notified to EMRs in SIU^S12.

    ``id`` is our (placer) appointment id, SCH-1; ``filler_appointment_id`` the RIS's, SCH-2;
    ``confirmation_code`` is what the patient was texted (not sent in HL7).
    """

    id: str
    order_id: str
    slot: Slot
    location: Location
    procedure_code: str = ""
    procedure_text: str = ""
    procedure_system: str = ""
    filler_appointment_id: str = ""
    confirmation_code: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    """A parsed acknowledgement (or the MSA of any response)."""

    code: AckCode
    control_id: str
    """MSA-2: the MSH-10 being acknowledged."""
    text: str = ""
    """MSA-3, else the ERR user message/diagnostic."""
    error_code: str = ""
    """HL7 table 0357 code from ERR (ERR-3.1 in 2.5+, ERR-1.4.1 in 2.3-2.4)."""


@dataclass(frozen=True, slots=True)
class BookingResult:
    accepted: bool
    ack_code: AckCode
    appointment_id: str
    """The filler (RIS) appointment id when the RIS returned one (SRR SCH-2), else ``""``."""
    reason: str
    """Human-readable reason for a rejection (MSA-3 / ERR), ``""`` on success."""
    error_code: str = ""


# ---- responder side (the simulated RIS) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """Who sent a request, so the responder can answer in kind (swap parties, same version and delimiters)."""

    control_id: str
    sender: Party
    receiver: Party
    version: str
    trigger: str
    charset: str


@dataclass(frozen=True, slots=True)
class LocationQuery:
    header: RequestHeader
    query_id: str
    modality: str
    """``""`` means all modalities."""


@dataclass(frozen=True, slots=True)
class SlotQuery:
    header: RequestHeader
    query_id: str
    location_id: str
    modality: str
    start: datetime
    end: datetime
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class BookingRequest:
    header: RequestHeader
    appointment_id: str
    """Our (placer) appointment id."""
    order_id: str
    filler_order_id: str
    mrn: str
    slot_id: str
    location_id: str
    modality: str
    start: datetime | None
    duration_minutes: int | None
    procedure_code: str = ""
    procedure_text: str = ""


@dataclass(frozen=True, slots=True)
class SiuMessage:
    """A parsed SIU (S12-S15, S17, S26) for relay mode: enough to route, log and update a known appointment;
    the bytes are relayed as they are."""

    control_id: str
    trigger: str
    version: str
    sending_application: str
    sending_facility: str
    placer_appointment_id: str
    filler_appointment_id: str
    filler_status: str
    start: datetime | None
    duration_minutes: int | None
    mrn: str
    location_id: str
    service_code: str
    placer_order_id: str = ""
    filler_order_id: str = ""
    event_reason: str = ""
    """SCH-6 text (else code): why the RIS changed the appointment. Staff-entered; never logged."""
