"""SIU^S12 to EMRs (v2.3 with SCH-11 timing, v2.5.1 with TQ1) and reading inbound SIU for relay mode.

What we fill, and why (reference/hl7.md 3.6/3.7 lists what the source design's sample got wrong):

* SCH-1 our appointment id (EI with our application as namespace), SCH-2 the RIS (filler) appointment id.
* SCH-6 event reason (required in 2.3), SCH-7/8 appointment reason/type, SCH-9/10 duration in minutes.
* 2.3: SCH-11 TQ ``^^M<min>^<start>^<end>``. 2.5.1: SCH-11 empty, TQ1 after SCH (TQ1-6 duration, TQ1-7/8).
* SCH-16 filler contact and SCH-20 entered-by (both required in 2.3), SCH-25 filler status ``Booked``;
  2.5.1 also SCH-26/27 placer/filler order numbers (the only standard place for the order link).
* NTE right after SCH is an appointment-level note. It carries no PHI: a fixed text saying the patient
  self-scheduled, never the patient's SMS replies.
* PID from the order: MRN, name, date of birth, sex — what EMRs match on. No phone numbers.
* PV1-3 and AIL-3 carry the location id; AIS-3 the procedure (or the modality when no procedure code).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from .errors import ParseError
from .header import build, version_tuple
from .ids import Clock, ControlIdSource, random_control_ids, system_clock
from .message import Message, SegmentBuilder, parse
from .model import Appointment, OrderRef, OutboundMessage, Party, SiuMessage
from .orders import mrn_of
from .segments import pid_segment, resource_segments, tq1_segment, tq_timing
from .timestamps import parse_ts
from .values import int_or_none

# S12 new, S13 rescheduled, S14 modified, S15 cancelled, S17 deleted (entered in error), S26 no-show.
RELAY_TRIGGERS = frozenset({"S12", "S13", "S14", "S15", "S17", "S26"})
DEFAULT_NOTE = "Self-scheduled by the patient via SMS"


def build_siu(
    appointment: Appointment,
    order: OrderRef,
    *,
    version: str,
    sender: Party,
    receiver: Party,
    trigger: str = "S12",
    clock: Clock = system_clock,
    control_ids: ControlIdSource = random_control_ids,
    tz: tzinfo = UTC,
    with_offset: bool = True,
    charset: str = "",
    filler_contact: tuple[str, ...] = ("", "SCHEDULER", "RIS"),
    entered_by: tuple[str, ...] = ("SMSBOT", "SELFSCHEDULE", "SMS"),
    note: str = DEFAULT_NOTE,
    filler_status: str = "Booked",
    event_reason: tuple[str, str, str] = ("NEW", "New appointment", "L"),
) -> OutboundMessage:
    """One SIU of the SIU_S12 structure (every SIU trigger shares it): S12 and, with the event reason and
    filler status of :data:`channels.changes.SIU_EVENTS`, S13/S14/S15/S17."""
    if not appointment.id:
        raise ValueError("SIU needs our appointment id (SCH-1)")
    modern = version_tuple(version) >= (2, 5)
    slot = appointment.slot
    minutes = slot.duration_minutes
    sch = SegmentBuilder("SCH", (appointment.id, sender.application))
    if appointment.filler_appointment_id:
        sch.field(2, appointment.filler_appointment_id)
    sch.field(6, event_reason)
    sch.field(7, ("ROUTINE", "Routine", "HL70276"))
    sch.field(8, ("Normal", "Normal", "HL70277"))
    sch.field(9, str(minutes))
    sch.field(10, "min")
    if not modern:
        sch.field(11, tq_timing(slot.start, minutes, tz, with_offset))
    sch.field(16, filler_contact)
    sch.field(20, entered_by)
    sch.field(25, (filler_status, filler_status, "HL70278") if modern else filler_status)
    if modern:
        placer = order.placer_order_id or order.order_id
        if placer:
            sch.field(26, placer)
        if order.filler_order_id:
            sch.field(27, order.filler_order_id)
    segments: list[SegmentBuilder] = [sch]
    if modern:
        segments.append(tq1_segment(slot.start, minutes, tz, with_offset))
    if note:
        nte = SegmentBuilder("NTE", "1", None, note)
        nte.formatted.add(3)
        segments.append(nte)
    segments.append(pid_segment(order, version))
    segments.append(SegmentBuilder("PV1", "1", "O", (slot.location_id, "", "", slot.location_id)))
    code = appointment.procedure_code or order.procedure_code
    text = appointment.procedure_text or order.procedure_text
    system = appointment.procedure_system or order.procedure_system
    service = (code, text, system) if code else (slot.modality, slot.modality, "DCM")
    segments += resource_segments(
        service=service,
        location_id=slot.location_id,
        location_name=appointment.location.name,
        location_type=slot.modality,
        start=slot.start,
        minutes=minutes,
        tz=tz,
        with_offset=with_offset,
    )
    return build(
        sender=sender,
        receiver=receiver,
        msg_type="SIU",
        trigger=trigger,
        structure="SIU_S12",
        version=version,
        segments=segments,
        clock=clock,
        control_ids=control_ids,
        tz=tz,
        with_offset=with_offset,
        charset=charset,
    )


def parse_siu(data: bytes | Message, *, tz: tzinfo = UTC) -> SiuMessage:
    """Read an SIU (S12-S15, S17, S26) for relay and record updates: routing and logging fields only."""
    msg = data if isinstance(data, Message) else parse(data)
    if msg.message_type != "SIU":
        raise ParseError("not an SIU message", hl7_error_code="200", location="MSH-9")
    if msg.trigger not in RELAY_TRIGGERS:
        raise ParseError(
            f"SIU^{msg.trigger} is not relayed", hl7_error_code="201", location="MSH-9"
        )
    sch = msg.require("SCH")
    tq1 = msg.first("TQ1")
    ais = msg.first("AIS")
    ail = msg.first("AIL")
    pid = msg.first("PID")
    start = _first_time([tq1.get(7) if tq1 else "", sch.get(11, 4), ais.get(4) if ais else ""], tz)
    duration = int_or_none(sch.get(9)) or (int_or_none(ais.get(7)) if ais else None)
    return SiuMessage(
        control_id=msg.control_id,
        trigger=msg.trigger,
        version=msg.version,
        sending_application=msg.sending_application,
        sending_facility=msg.sending_facility,
        placer_appointment_id=sch.get(1),
        filler_appointment_id=sch.get(2),
        filler_status=sch.get(25),
        start=start,
        duration_minutes=duration,
        mrn=mrn_of(pid) if pid else "",
        location_id=(ail.get(3, 4) or ail.get(3, 1)) if ail else "",
        service_code=ais.get(3) if ais else "",
        placer_order_id=sch.get(26),
        filler_order_id=sch.get(27),
        event_reason=sch.get(6, 2) or sch.get(6, 1),
    )


def _first_time(candidates: list[str], tz: tzinfo) -> datetime | None:
    for text in candidates:
        if text:
            try:
                return parse_ts(text, tz)
            except ParseError:
                continue
    return None
