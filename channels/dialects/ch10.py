"""``ch10-2.5.1``: the standard scheduling chapter (chapter 10) in HL7 v2.5.1.

* Locations: QRY^Q01 -> DSR^Q01 (chapter 10 has no location query; see :mod:`channels.dialects.base`).
* Slots: SQM^S25 (QRD-9 ``SOP``, QRD-10 modality, QRF-2/3 and ARQ-11 the window, AIL-3.4 the location)
  -> SQR^S25, one SCH group per open slot: SCH-2 slot id, TQ1-7 and AIS-4 start, AIS-7/8 duration,
  AIL-3.4 location, AIL-4 modality.
* Booking: SRM^S01 (ARQ-1 our appointment id, ARQ-2 the slot's filler id, ARQ-24/25 the order numbers,
  AIS-3 procedure, AIL-3.4 location, AIL-4 modality) -> SRR^S01 (AA + SCH-2 filler appointment id) or an
  SRR/ACK with AE/AR = rejection.
* SIU^S12 in v2.5.1 with TQ1 timing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import ClassVar

from .. import ack as _ack
from ..changes import REQUEST_TRIGGERS, SIU_EVENTS, ChangeKind, ChangeRequest
from ..errors import ParseError
from ..header import request_header
from ..message import Message, Segment, SegmentBuilder, parse
from ..model import (
    AckCode,
    Appointment,
    BookingRequest,
    OrderRef,
    OutboundMessage,
    Slot,
    SlotQuery,
)
from ..orders import mrn_of
from ..segments import pid_segment, resource_segments, service_for, split_xcn, tq1_segment
from ..values import int_or_none
from .base import Dialect
from .leaves import Leaves, first_by_name
from .settings import Placement

_SLOTS_WHAT = ("SOP", "Open slots", "HL70048")
_RESOURCES = frozenset({"QRD", "QRF", "ARQ", "AIS", "AIL", "RGS"})


class Ch10Dialect(Dialect):
    name = "ch10-2.5.1"
    version = "2.5.1"
    PLACEMENTS: ClassVar[Mapping[str, Placement]] = MappingProxyType(
        {
            "slot_query.location_id": Placement("AIL-3.4", _RESOURCES),
            "slot_query.modality": Placement("QRD-10", _RESOURCES),
            "slot_response.slot_id": Placement("SCH-2", frozenset({"SCH", "AIS", "AIL"})),
            "slot_response.location_id": Placement("AIL-3.4", frozenset({"SCH", "AIS", "AIL"})),
            "slot_response.modality": Placement("AIL-4", frozenset({"SCH", "AIS", "AIL"})),
            "booking.order_id": Placement("ARQ-24", frozenset({"ARQ", "AIS", "AIL"})),
            "booking.filler_order_id": Placement("ARQ-25", frozenset({"ARQ", "AIS", "AIL"})),
            "booking.appointment_id": Placement("ARQ-1", frozenset({"ARQ"})),
            "booking.slot_id": Placement("ARQ-2", frozenset({"ARQ", "AIS", "AIL"})),
            "booking.location_id": Placement("AIL-3.4", frozenset({"ARQ", "AIS", "AIL"})),
            "booking.modality": Placement("AIL-4", frozenset({"ARQ", "AIS", "AIL"})),
            "booking_response.appointment_id": Placement(
                "SCH-2", frozenset({"SCH", "MSA"}), optional=True
            ),
            # Reschedule/cancel (SRM^S02/S04) reuse the booking placements for the ids; these are their own.
            "change.reason": Placement("ARQ-6.2", frozenset({"ARQ"})),
            # The standard moves an appointment by its new time (ARQ-11) and resources; a site whose RIS
            # wants the new slot's id too names a field here (e.g. "AIS-3.4").
            "reschedule.slot_id": Placement("", frozenset({"ARQ", "AIS", "AIL"}), optional=True),
        }
    )
    SLOT_QUERY = ("SQM", "S25", "SQM_S25")
    BOOKING_ANSWERS = (("SRR", "S01"), ("ACK", ""))
    BOOKING_ANSWER = ("SRR", "S01", "SRR_S01")
    CHANGE_ANSWERS = (("SRR", "S02"), ("SRR", "S04"), ("ACK", ""))
    OPTIONS: ClassVar[Mapping[str, object]] = MappingProxyType({"charset": "UNICODE UTF-8"})

    def _arq(
        self, request_id: str, start: datetime | None, end: datetime | None, minutes: int | None
    ) -> SegmentBuilder:
        """ARQ with the fields 2.5.1 requires (ARQ-1, ARQ-15 placer contact, ARQ-19 entered by)."""
        arq = SegmentBuilder("ARQ", (request_id, self.local.application))
        arq.field(7, ("ROUTINE", "Routine", "HL70276"))
        arq.field(8, ("Normal", "Normal", "HL70277"))
        if minutes is not None:
            arq.field(9, str(minutes))
            arq.field(10, "min")
        if start is not None and end is not None:
            arq.field(11, (self._ts(start), self._ts(end)))
        arq.field(15, split_xcn(self._opt("placer_contact")))
        arq.field(19, split_xcn(self._opt("placer_contact")))
        return arq

    # ---- slots: SQM^S25 -> SQR^S25 ------------------------------------------------------------------------

    def _slot_query_segments(
        self,
        query_id: str,
        *,
        location_id: str,
        modality: str,
        start: datetime,
        end: datetime,
        limit: int | None,
        now: datetime | None = None,
    ) -> list[SegmentBuilder]:
        segments = [
            self._qrd("R", query_id, _SLOTS_WHAT, ("",), limit, now=now),
            SegmentBuilder("QRF", "RAD", self._ts(start), self._ts(end)),
            self._arq(query_id, start, end, None),
            *resource_segments(
                service=(modality, modality, "DCM"),
                location_id="",
                location_name="",
                location_type=modality,
                start=None,
                minutes=None,
                tz=self.tz,
                with_offset=self.with_offset,
            ),
        ]
        self._place(segments, "slot_query.location_id", location_id)
        self._place(segments, "slot_query.modality", modality.upper())
        return segments

    def parse_slot_query(self, data: bytes) -> SlotQuery:
        msg = parse(data)
        self._expect(msg, ("SQM", "S25"))
        qrd = msg.require("QRD")
        qrf = msg.first("QRF")
        arq = msg.first("ARQ")
        start = (qrf.get(2) if qrf else "") or (arq.get(11, 1) if arq else "")
        end = (qrf.get(3) if qrf else "") or (arq.get(11, 2) if arq else "")
        if not start or not end:
            raise ParseError(
                "slot query has no search window (QRF-2/3 or ARQ-11)",
                hl7_error_code="101",
                location="QRF-2",
            )
        return SlotQuery(
            header=request_header(msg),
            query_id=qrd.get(4),
            location_id=self._read(msg, "slot_query.location_id"),
            modality=self._read(msg, "slot_query.modality").upper(),
            start=self._read_ts(start, "QRF-2"),
            end=self._read_ts(end, "QRF-3"),
            limit=int_or_none(qrd.get(7, 1)),
        )

    def _slot_group(self, slot: Slot) -> list[SegmentBuilder]:
        sch = SegmentBuilder("SCH")
        sch.field(6, ("SOP", "Open slot", "L"))
        sch.field(9, str(slot.duration_minutes))
        sch.field(10, "min")
        sch.field(16, split_xcn(self._opt("siu_filler_contact")))
        sch.field(20, split_xcn(self._opt("siu_filler_contact")))
        group = [
            sch,
            tq1_segment(slot.start, slot.duration_minutes, self.tz, self.with_offset),
            *resource_segments(
                service=(slot.modality, slot.modality, "DCM"),
                location_id="",
                location_name="",
                location_type="",
                start=slot.start,
                minutes=slot.duration_minutes,
                tz=self.tz,
                with_offset=self.with_offset,
            ),
        ]
        self._place(group, "slot_response.slot_id", slot.id)
        self._place(group, "slot_response.location_id", slot.location_id)
        self._place(group, "slot_response.modality", slot.modality)
        return group

    def build_slot_response(self, query: SlotQuery, slots: Iterable[Slot]) -> OutboundMessage:
        groups = [seg for slot in slots for seg in self._slot_group(slot)]
        segments = self._query_ack(
            AckCode.AA, query.header.control_id, query.query_id, bool(groups)
        )
        return self._respond(query.header, ("SQR", "S25", "SQR_S25"), segments + groups)

    def parse_slot_response(self, data: bytes, expected_control_id: str) -> list[Slot]:
        def check(msg: Message) -> bool:
            self._expect(msg, ("SQR", "S25"), ("ACK", ""))
            self._raise_for(self._answer(msg, expected_control_id), msg)
            return True

        return self.slot_memo.read(data, b"SCH", check, self._read_slots)

    def _read_slots(self, msg: Message) -> list[Slot]:
        leaves = Leaves(msg)
        return [self._read_slot(leaves, group) for group in msg.groups("SCH")]

    def _read_slot(self, leaves: Leaves, group: list[Segment]) -> Slot:
        first = first_by_name(group)
        get = leaves.get
        paths = self.paths
        slot_id = leaves.at(first, paths["slot_response.slot_id"])
        if not slot_id:
            raise ParseError(
                "an SQR slot has no id (SCH-2)", hl7_error_code="101", location="SCH-2"
            )
        ais = first.get("AIS")
        tq1 = first.get("TQ1")
        sch = group[0]
        start_text = get(ais, 4) or get(tq1, 7) or get(sch, 11, 4)
        if not start_text:
            raise ParseError(
                "an SQR slot has no start (AIS-4/TQ1-7)", hl7_error_code="101", location="AIS-4"
            )
        minutes = (
            int_or_none(get(ais, 7)) or int_or_none(get(sch, 9)) or int_or_none(get(tq1, 6, 1))
        )
        if minutes is None:
            raise ParseError(
                "an SQR slot has no duration (AIS-7/SCH-9)", hl7_error_code="101", location="AIS-7"
            )
        modality = leaves.at(first, paths["slot_response.modality"]) or get(ais, 3)
        return Slot(
            id=slot_id,
            location_id=leaves.at(first, paths["slot_response.location_id"]),
            modality=modality.upper(),
            start=self._read_ts(start_text, "AIS-4"),
            duration_minutes=minutes,
        )

    # ---- booking: SRM^S01 -> SRR^S01 ----------------------------------------------------------------------

    def build_booking(self, order: OrderRef, slot: Slot, appointment_id: str) -> OutboundMessage:
        segments = self._srm_segments(order, slot, appointment_id, slot.id)
        return self._send(("SRM", "S01", "SRM_S01"), segments)

    def _srm_segments(
        self, order: OrderRef, slot: Slot, appointment_id: str, filler_id: str
    ) -> list[SegmentBuilder]:
        """ARQ PID RGS AIS AIL of an SRM (S01 book, S02 reschedule, S04 cancel) for ``slot``; ``filler_id``
        is the RIS's id in ARQ-2 (the open slot's for a booking, the booked appointment's afterwards)."""
        end = slot.start + timedelta(minutes=slot.duration_minutes)
        arq = self._arq("", slot.start, end, slot.duration_minutes)
        segments = [
            arq,
            pid_segment(order, self.version, mrn_authority=self._opt("mrn_authority")),
            *resource_segments(
                service=service_for(order, slot),
                location_id="",
                location_name="",
                location_type="",
                start=slot.start,
                minutes=slot.duration_minutes,
                tz=self.tz,
                with_offset=self.with_offset,
            ),
        ]
        self._place(segments, "booking.appointment_id", appointment_id)
        self._place(segments, "booking.slot_id", filler_id)
        self._place(segments, "booking.order_id", order.placer_order_id or order.order_id)
        self._place(segments, "booking.filler_order_id", order.filler_order_id)
        self._place(segments, "booking.location_id", slot.location_id)
        self._place(segments, "booking.modality", slot.modality)
        return segments

    def parse_booking_request(self, data: bytes) -> BookingRequest:
        msg = parse(data)
        self._expect(msg, ("SRM", "S01"))
        arq = msg.require("ARQ")
        ais = msg.first("AIS")
        pid = msg.first("PID")
        start_text = (ais.get(4) if ais else "") or arq.get(11, 1)
        minutes = int_or_none(ais.get(7) if ais else "") or int_or_none(arq.get(9))
        return BookingRequest(
            header=request_header(msg),
            appointment_id=self._read(msg, "booking.appointment_id"),
            order_id=self._read(msg, "booking.order_id"),
            filler_order_id=self._read(msg, "booking.filler_order_id"),
            mrn=mrn_of(pid) if pid else "",
            slot_id=self._read(msg, "booking.slot_id"),
            location_id=self._read(msg, "booking.location_id"),
            modality=self._read(msg, "booking.modality").upper(),
            start=self._read_ts(start_text, "AIS-4") if start_text else None,
            duration_minutes=minutes,
            procedure_code=ais.get(3, 1) if ais else "",
            procedure_text=ais.get(3, 2) if ais else "",
        )

    def _booked_segments(
        self, request: BookingRequest, appointment_id: str, slot: Slot | None
    ) -> list[SegmentBuilder]:
        """SCH (+TQ1, RGS/AIS/AIL) of a booked appointment in an SRR."""
        start = slot.start if slot else request.start
        minutes = slot.duration_minutes if slot else request.duration_minutes
        sch = SegmentBuilder("SCH", request.appointment_id)
        sch.field(6, ("S01", "New booking", "L"))
        if minutes is not None:
            sch.field(9, str(minutes))
            sch.field(10, "min")
        sch.field(16, split_xcn(self._opt("siu_filler_contact")))
        sch.field(20, split_xcn(self._opt("siu_filler_contact")))
        sch.field(25, ("Booked", "Booked", "HL70278"))
        segments = [sch]
        if start is not None and minutes is not None:
            segments.append(tq1_segment(start, minutes, self.tz, self.with_offset))
        # SRR's schedule group requires its resource group: echo what was booked.
        modality = slot.modality if slot else request.modality
        code = request.procedure_code or modality
        resources = resource_segments(
            service=(code, request.procedure_text or code, "" if request.procedure_code else "DCM"),
            location_id="",
            location_name="",
            location_type="",
            start=start,
            minutes=minutes,
            tz=self.tz,
            with_offset=self.with_offset,
        )
        location_id = slot.location_id if slot else request.location_id
        self._place(resources, "booking.location_id", location_id, required=False)
        self._place(resources, "booking.modality", modality, required=False)
        segments += resources
        return segments

    # ---- reschedule and cancel: SRM^S02 / SRM^S04 -> SRR (or ACK) -----------------------------------------

    def _change(
        self,
        kind: ChangeKind,
        appointment: Appointment,
        order: OrderRef,
        slot: Slot,
        reason: str,
    ) -> OutboundMessage:
        """SRM^S02/S04: the SRM_S01 structure with ARQ-1 ours, ARQ-2 the RIS's id of the booked appointment
        (what the booking's SRR returned, else the slot id we booked), ARQ-6 the request event reason and
        ARQ-11 / AIS / AIL the (new) timing and resources."""
        trigger = REQUEST_TRIGGERS[kind]
        filler_id = appointment.filler_appointment_id or appointment.slot.id
        segments = self._srm_segments(order, slot, appointment.id, filler_id)
        segments[0].field(6, _REQUEST_EVENT[kind])
        self._place(segments, "change.reason", reason)
        if kind is ChangeKind.RESCHEDULE:
            self._place(segments, "reschedule.slot_id", slot.id)
        return self._send(("SRM", trigger, "SRM_S01"), segments)

    def build_cancel(
        self, appointment: Appointment, order: OrderRef, *, reason: str = ""
    ) -> OutboundMessage:
        return self._change(ChangeKind.CANCEL, appointment, order, appointment.slot, reason)

    def build_reschedule(
        self, appointment: Appointment, order: OrderRef, slot: Slot, *, reason: str = ""
    ) -> OutboundMessage:
        return self._change(ChangeKind.RESCHEDULE, appointment, order, slot, reason)

    def parse_change_request(self, data: bytes) -> ChangeRequest:
        msg = parse(data)
        self._expect(msg, ("SRM", "S02"), ("SRM", "S04"))
        kind = ChangeKind.RESCHEDULE if msg.trigger == "S02" else ChangeKind.CANCEL
        arq = msg.require("ARQ")
        ais = msg.first("AIS")
        pid = msg.first("PID")
        start_text = (ais.get(4) if ais else "") or arq.get(11, 1)
        return ChangeRequest(
            header=request_header(msg),
            kind=kind,
            appointment_id=self._read(msg, "booking.appointment_id"),
            filler_appointment_id=self._read(msg, "booking.slot_id"),
            order_id=self._read(msg, "booking.order_id"),
            filler_order_id=self._read(msg, "booking.filler_order_id"),
            slot_id=self._read(msg, "reschedule.slot_id"),
            location_id=self._read(msg, "booking.location_id"),
            modality=self._read(msg, "booking.modality").upper(),
            start=self._read_ts(start_text, "AIS-4") if start_text else None,
            duration_minutes=int_or_none(ais.get(7) if ais else "") or int_or_none(arq.get(9)),
            reason=self._read(msg, "change.reason") or arq.get(6, 1),
            mrn=mrn_of(pid) if pid else "",
        )

    def build_change_response(
        self,
        request: ChangeRequest,
        *,
        accepted: bool,
        reason: str = "",
        code: AckCode | None = None,
        filler_appointment_id: str = "",
        slot: Slot | None = None,
    ) -> OutboundMessage:
        """SRR^S02/S04: AA with the appointment as it now stands (SCH-25 Booked or Cancelled), or AE/AR + ERR."""
        ack_code = code or (AckCode.AA if accepted else AckCode.AE)
        segments = [_ack.msa_segment(ack_code, request.header.control_id, reason)]
        if ack_code.is_success:
            segments += self._changed_schedule(request, filler_appointment_id, slot)
        else:
            segments.append(_ack.err_segment(self.version, "207", reason))
        self._place(segments, "booking_response.appointment_id", filler_appointment_id)
        trigger = REQUEST_TRIGGERS[request.kind]
        return self._respond(request.header, ("SRR", trigger, "SRR_S01"), segments)

    def _changed_schedule(
        self, request: ChangeRequest, filler_appointment_id: str, slot: Slot | None
    ) -> list[SegmentBuilder]:
        """SCH (+TQ1) and the resource group SRR requires, describing the appointment after the change."""
        start = slot.start if slot else request.start
        minutes = slot.duration_minutes if slot else request.duration_minutes
        event, status = SIU_EVENTS[request.kind.siu_trigger]
        sch = SegmentBuilder("SCH", request.appointment_id)
        if filler_appointment_id:
            sch.field(2, filler_appointment_id)
        sch.field(6, event)
        if minutes is not None:
            sch.field(9, str(minutes))
            sch.field(10, "min")
        sch.field(16, split_xcn(self._opt("siu_filler_contact")))
        sch.field(20, split_xcn(self._opt("siu_filler_contact")))
        sch.field(25, (status, status, "HL70278"))
        segments = [sch]
        if start is not None and minutes is not None:
            segments.append(tq1_segment(start, minutes, self.tz, self.with_offset))
        modality = slot.modality if slot else request.modality
        resources = resource_segments(
            service=(modality, modality, "DCM"),
            location_id="",
            location_name="",
            location_type="",
            start=start,
            minutes=minutes,
            tz=self.tz,
            with_offset=self.with_offset,
        )
        location_id = slot.location_id if slot else request.location_id
        self._place(resources, "booking.location_id", location_id, required=False)
        self._place(resources, "booking.modality", modality, required=False)
        return segments + resources


_REQUEST_EVENT = {
    ChangeKind.RESCHEDULE: ("S02", "Reschedule requested", "L"),
    ChangeKind.CANCEL: ("S04", "Cancellation requested", "L"),
}


def _first(group: list[Segment], name: str) -> Segment | None:
    return next((s for s in group if s.name == name), None)
