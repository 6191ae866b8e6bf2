"""``qie-2.3``: the shape the source design used with Qvera QIE, in HL7 v2.3.

* Locations: QRY^Q01 -> DSR^Q01 (shared with ch10, see :mod:`channels.dialects.base`).
* Slots: QRY^Q01 with QRD-9 ``SOP`` (open slots), QRD-10 the modality, QRF-1 the location and QRF-2/3 the
  window -> DSR^Q01 with one ``SLOT;...`` row per DSP segment (:mod:`channels.dialects.dsp`).
* Booking: ORM^O01 (ORC-1 ``XO`` change request, ORC-5 ``SC`` scheduled, timing in ORC-7/OBR-27, our
  appointment id in OBR-18 placer field 1, the RIS slot id in OBR-20 filler field 1, the location in PV1-3.4)
  answered by a general ACK: AA booked, AE/AR rejected (MSA-3/ERR say why). A bare ACK has no appointment id,
  so :attr:`BookingResult.appointment_id` is empty unless the site maps one (``booking_response.appointment_id``).
* SIU^S12 in v2.3 with SCH-11 timing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import ClassVar

from .. import ack as _ack
from ..changes import ChangeKind, ChangeRequest
from ..errors import ParseError
from ..header import request_header
from ..message import FieldPath, Message, SegmentBuilder, parse
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
from ..segments import pid_segment, service_for, tq_timing
from ..values import int_or_none
from . import dsp
from .base import Dialect
from .settings import Placement

_SLOTS_WHAT = ("SOP", "Open slots", "HL70048")
_TQ_MINUTES = re.compile(r"M(\d{1,4})")
_QRD10 = FieldPath("QRD", 10)
_QRF1 = FieldPath("QRF", 1)


class Qie23Dialect(Dialect):
    name = "qie-2.3"
    version = "2.3"
    PLACEMENTS: ClassVar[Mapping[str, Placement]] = MappingProxyType(
        {
            "slot_query.location_id": Placement("QRF-1", frozenset({"QRD", "QRF"})),
            "slot_query.modality": Placement("QRD-10", frozenset({"QRD", "QRF"})),
            "booking.order_id": Placement("ORC-2", frozenset({"ORC", "OBR"})),
            "booking.filler_order_id": Placement("ORC-3", frozenset({"ORC", "OBR"})),
            "booking.appointment_id": Placement("OBR-18", frozenset({"ORC", "OBR", "PV1"})),
            "booking.slot_id": Placement("OBR-20", frozenset({"ORC", "OBR", "PV1"})),
            "booking.location_id": Placement("PV1-3.4", frozenset({"ORC", "OBR", "PV1"})),
            "booking.modality": Placement("OBR-24", frozenset({"ORC", "OBR", "PV1"})),
            "booking_response.appointment_id": Placement("", frozenset({"MSA"}), optional=True),
            # Cancel (ORC-1 CA) and reschedule (XO) reuse the booking placements; the reason is their own.
            "change.reason": Placement("ORC-16.2", frozenset({"ORC", "OBR"})),
        }
    )
    # v2.3 peers rarely declare MSH-18; we write ASCII (transliterating) unless the site sets a charset.
    SLOT_QUERY = ("QRY", "Q01", "QRY_Q01")
    BOOKING_ANSWERS = (("ACK", ""), ("ORR", "O02"))
    BOOKING_ANSWER = ("ACK", "", "ACK")
    CHANGE_ANSWERS = (("ACK", ""), ("ORR", "O02"))
    OPTIONS: ClassVar[Mapping[str, object]] = MappingProxyType({"charset": ""})

    # ---- slots: QRY^Q01 -> DSR^Q01 ------------------------------------------------------------------------

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
            self._qrd("D", query_id, _SLOTS_WHAT, ("",), limit, now=now),
            SegmentBuilder("QRF", "", self._ts(start), self._ts(end)),
        ]
        self._place(segments, "slot_query.location_id", location_id)
        self._place(segments, "slot_query.modality", modality.upper())
        for seg in segments:
            # QRD-10 and QRF-1 are required: keep them valued when a site moved their value elsewhere.
            if seg.name == "QRD" and not seg.get(_QRD10):
                seg.set(_QRD10, "RAD")
            if seg.name == "QRF" and not seg.get(_QRF1):
                seg.set(_QRF1, "RAD")
        return segments

    def parse_slot_query(self, data: bytes) -> SlotQuery:
        msg = parse(data)
        self._expect(msg, ("QRY", "Q01"))
        qrd, qrf = msg.require("QRD"), msg.require("QRF")
        return SlotQuery(
            header=request_header(msg),
            query_id=qrd.get(4),
            location_id=self._read(msg, "slot_query.location_id"),
            modality=self._read(msg, "slot_query.modality").upper(),
            start=self._read_ts(qrf.get(2), "QRF-2"),
            end=self._read_ts(qrf.get(3), "QRF-3"),
            limit=int_or_none(qrd.get(7, 1)),
        )

    def build_slot_response(self, query: SlotQuery, slots: Iterable[Slot]) -> OutboundMessage:
        sep, list_sep = self._opt("dsp_separator"), self._opt("dsp_list_separator")
        rows = [
            dsp.encode_row(
                dsp.SLOT_TAG,
                [s.id, s.location_id, s.modality, self._ts(s.start), str(s.duration_minutes)],
                sep,
                list_sep,
            )
            for s in slots
        ]
        echo = self._slot_query_segments(
            query.query_id,
            location_id=query.location_id,
            modality=query.modality,
            start=query.start,
            end=query.end,
            limit=query.limit,
        )
        return self._display_response(query.header, query.query_id, echo, rows)

    def parse_slot_response(self, data: bytes, expected_control_id: str) -> list[Slot]:
        def check(msg: Message) -> bool:
            self._expect(msg, ("DSR", "Q01"), ("ACK", ""))
            self._raise_for(self._answer(msg, expected_control_id), msg)
            return not self._no_data(msg)

        return self.slot_memo.read(data, b"DSP", check, self._read_slots)

    def _read_slots(self, msg: Message) -> list[Slot]:
        sep = self._opt("dsp_separator")
        out: list[Slot] = []
        for seg in msg.all("DSP"):
            cells = dsp.decode_row(seg.get(3), dsp.SLOT_TAG, sep)
            if cells is None:
                continue
            cells += [""] * (5 - len(cells))
            slot_id, location_id, modality, start, minutes = (dsp.cell(c) for c in cells[:5])
            duration = int_or_none(minutes)
            if not slot_id or duration is None:
                raise ParseError(
                    "a SLOT row in DSP-3 lacks an id or duration",
                    hl7_error_code="101",
                    location="DSP-3",
                )
            out.append(
                Slot(
                    slot_id, location_id, modality.upper(), self._read_ts(start, "DSP-3"), duration
                )
            )
        return out

    # ---- booking: ORM^O01 -> ACK --------------------------------------------------------------------------

    def build_booking(self, order: OrderRef, slot: Slot, appointment_id: str) -> OutboundMessage:
        return self._send(
            ("ORM", "O01", "ORM_O01"), self._order_segments(order, slot, appointment_id)
        )

    def _order_segments(
        self,
        order: OrderRef,
        slot: Slot,
        appointment_id: str,
        *,
        control: str = "XO",
        status: str = "SC",
        slot_id: str | None = None,
    ) -> list[SegmentBuilder]:
        """PID PV1 ORC OBR of a booking (XO/SC), a reschedule (XO/SC, new slot) or a cancel (CA)."""
        placer = order.placer_order_id or order.order_id
        timing = tq_timing(slot.start, slot.duration_minutes, self.tz, self.with_offset)
        service = service_for(order, slot)
        pv1 = SegmentBuilder("PV1", "1", "O")
        orc = SegmentBuilder(
            "ORC", control, placer, order.filler_order_id, None, status, None, timing
        )
        obr = SegmentBuilder("OBR", "1", placer, order.filler_order_id, service)
        obr.field(27, timing)
        obr.field(36, self._ts(slot.start))
        segments = [
            pid_segment(order, self.version, mrn_authority=self._opt("mrn_authority")),
            pv1,
            orc,
            obr,
        ]
        self._place(segments, "booking.order_id", placer)
        self._place(segments, "booking.filler_order_id", order.filler_order_id)
        self._place(segments, "booking.appointment_id", appointment_id)
        self._place(segments, "booking.slot_id", slot.id if slot_id is None else slot_id)
        self._place(segments, "booking.location_id", slot.location_id)
        self._place(segments, "booking.modality", slot.modality)
        return segments

    def parse_booking_request(self, data: bytes) -> BookingRequest:
        msg = parse(data)
        self._expect(msg, ("ORM", "O01"))
        return self._order_request(msg)

    def _order_request(self, msg: Message) -> BookingRequest:
        orc = msg.require("ORC")
        obr = msg.first("OBR")
        pid = msg.first("PID")
        start_text = (
            orc.get(7, 4) or (obr.get(27, 4) if obr else "") or (obr.get(36) if obr else "")
        )
        minutes = _TQ_MINUTES.fullmatch(orc.get(7, 3) or (obr.get(27, 3) if obr else ""))
        return BookingRequest(
            header=request_header(msg),
            appointment_id=self._read(msg, "booking.appointment_id"),
            order_id=self._read(msg, "booking.order_id"),
            filler_order_id=self._read(msg, "booking.filler_order_id"),
            mrn=mrn_of(pid) if pid else "",
            slot_id=self._read(msg, "booking.slot_id"),
            location_id=self._read(msg, "booking.location_id"),
            modality=self._read(msg, "booking.modality").upper(),
            start=self._read_ts(start_text, "ORC-7.4") if start_text else None,
            duration_minutes=int(minutes[1]) if minutes else None,
            procedure_code=obr.get(4, 1) if obr else "",
            procedure_text=obr.get(4, 2) if obr else "",
        )

    # ---- cancel and reschedule: ORM^O01 ORC-1 CA / XO -> ORR^O02 (CR/UC) or ACK -----------------------------

    def build_cancel(
        self, appointment: Appointment, order: OrderRef, *, reason: str = ""
    ) -> OutboundMessage:
        """ORM^O01 ORC-1 ``CA`` for the booked order: OBR-18 ours, OBR-20 the RIS's id of the appointment
        (else the slot we booked), the booked timing in ORC-7/OBR-27 (required in 2.3), ORC-16 the reason."""
        segments = self._order_segments(
            order,
            appointment.slot,
            appointment.id,
            control="CA",
            status="",
            slot_id=appointment.filler_appointment_id or appointment.slot.id,
        )
        self._reason(segments, ("CANCEL", "Cancellation requested", "L"), reason)
        return self._send(("ORM", "O01", "ORM_O01"), segments)

    def build_reschedule(
        self, appointment: Appointment, order: OrderRef, slot: Slot, *, reason: str = ""
    ) -> OutboundMessage:
        """ORM^O01 ORC-1 ``XO`` with the new timing and slot: the same shape as the booking (this dialect books
        with XO too); the RIS knows it as a move because it already holds OBR-18 for the order."""
        segments = self._order_segments(order, slot, appointment.id)
        self._reason(segments, ("RESCHED", "Reschedule requested", "L"), reason)
        return self._send(("ORM", "O01", "ORM_O01"), segments)

    def _reason(
        self, segments: list[SegmentBuilder], default: tuple[str, str, str], reason: str
    ) -> None:
        for seg in segments:
            if seg.name == "ORC":
                seg.field(16, default)
        self._place(segments, "change.reason", reason)

    def parse_change_request(self, data: bytes) -> ChangeRequest:
        msg = parse(data)
        self._expect(msg, ("ORM", "O01"))
        control = msg.require("ORC").get(1).strip().upper()
        if control not in ("CA", "XO"):
            raise ParseError(
                f"ORC-1 {control or '(empty)'} is not a cancel (CA) or change (XO) request",
                hl7_error_code="103",
                location="ORC-1",
            )
        req = self._order_request(msg)
        cancel = control == "CA"
        orc = msg.require("ORC")
        return ChangeRequest(
            header=req.header,
            kind=ChangeKind.CANCEL if cancel else ChangeKind.RESCHEDULE,
            appointment_id=req.appointment_id,
            filler_appointment_id=req.slot_id if cancel else "",
            order_id=req.order_id,
            filler_order_id=req.filler_order_id,
            slot_id="" if cancel else req.slot_id,
            location_id=req.location_id,
            modality=req.modality,
            start=req.start,
            duration_minutes=req.duration_minutes,
            reason=self._read(msg, "change.reason") or orc.get(16, 1),
            mrn=req.mrn,
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
        """A cancel is answered ORR^O02 with ORC-1 ``CR`` (cancelled as requested) or ``UC`` (unable to
        cancel, ORC-16 and MSA-3 say why); a reschedule like a booking (ACK AA, or AE: slot taken).
        ``code`` AE/AR answers either with a general error ACK."""
        del filler_appointment_id, slot  # a 2.3 ACK/ORR carries no schedule
        if code is not None and not code.is_success:
            return self.build_query_error(request.header, reason, code=code)
        if request.kind is not ChangeKind.CANCEL:
            if accepted:
                segments = [_ack.msa_segment(AckCode.AA, request.header.control_id)]
                return self._respond(request.header, ("ACK", "O01", "ACK"), segments)
            return self.build_query_error(request.header, reason or "Requested slot not available")
        # ORC-7 / OBR-27 are required in 2.3: echo the booked timing, else a bare quantity of one.
        timing: tuple[str, ...] = ("1",)
        if request.start is not None and request.duration_minutes is not None:
            timing = tq_timing(request.start, request.duration_minutes, self.tz, self.with_offset)
        control = "CR" if accepted else "UC"
        orc = SegmentBuilder(
            "ORC", control, request.order_id, request.filler_order_id, None, None, None, timing
        )
        if not accepted:
            orc.field(16, ("UC", reason or "Unable to cancel", "L"))
        service = (request.modality or "RAD",) * 2 + ("DCM" if request.modality else "L",)
        obr = SegmentBuilder("OBR", "1", request.order_id, request.filler_order_id, service)
        obr.field(27, timing)
        segments = [
            _ack.msa_segment(AckCode.AA, request.header.control_id, "" if accepted else reason),
            orc,
            obr,
        ]
        return self._respond(request.header, ("ORR", "O02", "ORR_O02"), segments)
