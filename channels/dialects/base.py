"""What every dialect shares: configuration, MSH/response plumbing, location queries, orders, SIU and ACKs.

A dialect is *one peer's* contract: the version, the message types, and where each value travels. The two
shipped dialects differ only in the slot query and booking exchanges (and their version), so those are the
abstract methods; everything else lives here.

Requester side (the daemon): ``build_*`` returns an :class:`~channels.model.OutboundMessage` whose
``control_id`` the caller keeps; ``parse_*_response(data, expected_control_id)`` checks MSA-2 against it and
raises :class:`~channels.errors.ControlIdMismatch` for a reply to another request (count and discard),
:class:`~channels.errors.ResponseError` when the peer answered with an error, and
:class:`~channels.errors.ParseError` for anything unreadable.

Responder side (the simulated RIS): ``parse_*`` reads a request, ``build_*_response`` answers it with the
parties swapped, in the dialect's version and the request's control id in MSA-2.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from typing import ClassVar
from zoneinfo import ZoneInfo

from .. import ack as _ack
from .. import orders as _orders
from .. import siu as _siu
from ..changes import SIU_EVENTS, ChangeKind, ChangeRequest, ChangeResult
from ..errors import ConfigError, ParseError, ResponseError
from ..header import build, request_header
from ..ids import Clock, ControlIdSource, random_control_ids, system_clock
from ..message import FieldPath, Message, Segment, SegmentBuilder, parse
from ..model import (
    DEFAULT_LOCAL,
    DEFAULT_REMOTE,
    Ack,
    AckCode,
    Appointment,
    BookingRequest,
    BookingResult,
    Location,
    LocationQuery,
    Order,
    OrderRef,
    OutboundMessage,
    Party,
    RequestHeader,
    SiuMessage,
    Slot,
    SlotQuery,
)
from ..segments import split_xcn
from ..timestamps import format_ts, parse_ts
from . import dsp
from .querytemplate import QUERY_ID_LEN, QueryTemplates
from .settings import Placement, resolve
from .slotmemo import SlotMemo

# Placements every dialect has (orders from the RIS, the location query).
COMMON_PLACEMENTS: dict[str, Placement] = {
    "order.facility": Placement("MSH-4", frozenset({"MSH", "PV1", "ORC", "OBR", "PID"})),
    "order.modality": Placement("OBR-24", frozenset({"OBR", "ORC", "ZDS", "PV1"})),
    "order.procedure": Placement("OBR-4", frozenset({"OBR"})),
    "location_query.modality": Placement("QRF-4", frozenset({"QRD", "QRF"})),
}

BASE_OPTIONS: dict[str, object] = {
    "timestamps_with_offset": True,
    "dsp_separator": ";",
    "dsp_list_separator": ",",
    "siu_filler_contact": "^SCHEDULER^RIS",
    "siu_entered_by": "SMSBOT^SELFSCHEDULE^SMS",
    "siu_note": _siu.DEFAULT_NOTE,
    "placer_contact": "SMSBOT^SELFSCHEDULE^SMS",
    "query_limit": 50,
    "mrn_authority": "",
}


class Dialect(abc.ABC):
    """Base of the shipped dialects. Build one with :func:`channels.get_dialect`."""

    name: ClassVar[str]
    version: ClassVar[str]
    PLACEMENTS: ClassVar[Mapping[str, Placement]]
    OPTIONS: ClassVar[Mapping[str, object]]

    def __init__(
        self,
        overrides: Mapping[str, object] | None = None,
        *,
        local: Party = DEFAULT_LOCAL,
        remote: Party = DEFAULT_REMOTE,
        tz: tzinfo = UTC,
        clock: Clock = system_clock,
        control_ids: ControlIdSource = random_control_ids,
        slot_memo: SlotMemo | None = None,
    ) -> None:
        self.paths, self.options = resolve(
            self.name,
            {**COMMON_PLACEMENTS, **self.PLACEMENTS},
            {**BASE_OPTIONS, **self.OPTIONS},
            overrides,
        )
        self.local = local
        self.remote = remote
        zone = self.options.get("timezone")
        self.tz: tzinfo = ZoneInfo(str(zone)) if zone else tz
        self.clock = clock
        self.control_ids = control_ids
        #: Slots of recent answer bodies (slotmemo.py); per instance, as they depend on tz and paths.
        self.slot_memo = SlotMemo() if slot_memo is None else slot_memo
        #: Encoded slot queries by question (querytemplate.py); per instance, like the memo.
        self.query_templates = QueryTemplates(self._ts)

    def __repr__(self) -> str:
        return f"<Dialect {self.name} v{self.version}>"

    # ---- small helpers ------------------------------------------------------------------------------------

    @property
    def with_offset(self) -> bool:
        return bool(self.options["timestamps_with_offset"])

    @property
    def charset(self) -> str:
        return str(self.options["charset"])

    def _opt(self, key: str) -> str:
        return str(self.options[key])

    def path(self, key: str) -> FieldPath | None:
        return self.paths[key]

    def _ts(self, moment: datetime) -> str:
        return format_ts(moment, self.tz, with_offset=self.with_offset)

    def _read_ts(self, text: str, field: str) -> datetime:
        return parse_ts(text, self.tz, field=field)

    def _place(
        self, segments: Sequence[SegmentBuilder], key: str, value: str, *, required: bool = True
    ) -> None:
        """Write ``value`` at the placement ``key`` (into the first segment of that name).

        ``required=False`` is for echoes (e.g. the resources of an SRR) where a site may have moved the value
        into a segment the echo does not carry.
        """
        path = self.paths[key]
        if path is None or not value:
            return
        for seg in segments:
            if seg.name == path.segment:
                seg.set(path, value)
                return
        if not required:
            return
        raise ConfigError(
            f"{self.name}: placement {key!r}={path} names a segment this message lacks"
        )

    def _read(self, msg: Message, key: str, within: Sequence[Segment] | None = None) -> str:
        path = self.paths[key]
        return msg.value(path, within).strip() if path is not None else ""

    def _build(
        self,
        sender: Party,
        receiver: Party,
        kind: tuple[str, str, str],
        segments: Sequence[SegmentBuilder],
        control_id: str | None = None,
        *,
        now: datetime | None = None,
    ) -> OutboundMessage:
        msg_type, trigger, structure = kind
        return build(
            sender=sender,
            receiver=receiver,
            msg_type=msg_type,
            trigger=trigger,
            structure=structure,
            version=self.version,
            segments=segments,
            clock=self.clock if now is None else (lambda: now),
            control_ids=self.control_ids,
            tz=self.tz,
            with_offset=self.with_offset,
            charset=self.charset,
            control_id=control_id,
        )

    def _send(
        self,
        kind: tuple[str, str, str],
        segments: Sequence[SegmentBuilder],
        control_id: str | None = None,
        *,
        now: datetime | None = None,
    ) -> OutboundMessage:
        """A request from us to the RIS (built at ``now``, else at the clock's time)."""
        return self._build(self.local, self.remote, kind, segments, control_id, now=now)

    def _respond(
        self, header: RequestHeader, kind: tuple[str, str, str], segments: Sequence[SegmentBuilder]
    ) -> OutboundMessage:
        """A response: the request's receiver answers its sender, in this dialect's version and charset."""
        return self._build(header.receiver, header.sender, kind, segments)

    @staticmethod
    def _expect(msg: Message, *types: tuple[str, str]) -> None:
        if (msg.message_type, msg.trigger) not in types and msg.message_type not in {
            t for t, tr in types if not tr
        }:
            wanted = " or ".join(f"{t}^{tr}" if tr else t for t, tr in types)
            raise ParseError(
                f"expected {wanted}, got {msg.message_type}^{msg.trigger}",
                hl7_error_code="200",
                location="MSH-9",
            )

    @staticmethod
    def _answer(msg: Message, expected_control_id: str) -> Ack:
        """MSA of a response, checked against our control id (:class:`ControlIdMismatch` otherwise).

        We send in original mode, so the answer must be an application acknowledgement. A bare CA (enhanced-mode
        commit accept) says only "received"; reading it as an empty answer or a failed booking would both be
        wrong, so it is reported as a :class:`ResponseError` the daemon can log and retry.
        """
        ack = _ack.read_ack(msg)
        _ack.check_control_id(ack, expected_control_id)
        if ack.code is AckCode.CA:
            raise ResponseError(
                "CA", "commit acknowledgement only; the peer answers in enhanced mode"
            )
        return ack

    @staticmethod
    def _raise_for(ack: Ack, msg: Message) -> None:
        """Queries: an error in MSA-1 or QAK-2 is a :class:`ResponseError` (bookings use BookingResult)."""
        if not ack.code.is_success:
            raise ResponseError(ack.code.value, ack.text, ack.error_code)
        qak = msg.first("QAK")
        status = qak.get(2).upper() if qak else ""
        if status in ("AE", "AR"):
            raise ResponseError(status, ack.text or "query rejected (QAK-2)", ack.error_code)

    @staticmethod
    def _no_data(msg: Message) -> bool:
        qak = msg.first("QAK")
        return qak is not None and qak.get(2).upper() == "NF"

    def _qrd(
        self,
        format_code: str,
        query_id: str,
        what: tuple[str, str, str],
        department: Sequence[str],
        limit: int | None = None,
        *,
        now: datetime | None = None,
    ) -> SegmentBuilder:
        """QRD of an original-mode query: QRD-2 D (display, QRY) or R (record, SQM); QRD-4 is ST(10) in 2.3,
        so the query id is the last 10 characters of the control id."""
        return SegmentBuilder(
            "QRD",
            self._ts(self.clock() if now is None else now),
            format_code,
            "I",
            query_id[-QUERY_ID_LEN:],
            None,
            None,
            (str(limit or self.options["query_limit"]), "RD"),
            "ALL",
            what,
            tuple(department),
        )

    @staticmethod
    def _query_id(msg: Message) -> str:
        qrd = msg.first("QRD")
        return qrd.get(4) if qrd else ""

    def _query_ack(
        self, code: AckCode, control_id: str, query_id: str, found: bool
    ) -> list[SegmentBuilder]:
        return [
            _ack.msa_segment(code, control_id),
            SegmentBuilder("QAK", query_id, "OK" if found else "NF"),
        ]

    # ---- location query: QRY^Q01 -> DSR^Q01 in both dialects --------------------------------------------

    _LOCATION_WHAT = ("OTH", "Other", "HL70048")
    _LOCATION_DEPT = ("IMGLOC", "Imaging locations", "L")

    def build_location_query(self, modality: str = "") -> OutboundMessage:
        """QRY^Q01 for the locations offering ``modality`` (all locations when empty)."""
        cid = self.control_ids()
        segments = [
            self._qrd("D", cid, self._LOCATION_WHAT, self._LOCATION_DEPT),
            SegmentBuilder("QRF", "RAD"),
        ]
        self._place(segments, "location_query.modality", modality.upper())
        return self._send(("QRY", "Q01", "QRY_Q01"), segments, cid)

    def parse_location_response(self, data: bytes, expected_control_id: str) -> list[Location]:
        msg = parse(data)
        self._expect(msg, ("DSR", "Q01"), ("ACK", ""))
        ack = self._answer(msg, expected_control_id)
        self._raise_for(ack, msg)
        if self._no_data(msg):
            return []
        sep, list_sep = self._opt("dsp_separator"), self._opt("dsp_list_separator")
        out: list[Location] = []
        for seg in msg.all("DSP"):
            cells = dsp.decode_row(seg.get(3), dsp.LOCATION_TAG, sep)
            if cells is None:
                continue
            cells += [""] * (4 - len(cells))
            if not dsp.cell(cells[0]):
                raise ParseError(
                    "a LOC row in DSP-3 has no location id", hl7_error_code="101", location="DSP-3"
                )
            out.append(
                Location(
                    id=dsp.cell(cells[0]),
                    name=dsp.cell(cells[1]),
                    address=dsp.cell(cells[2]),
                    modalities=tuple(m.upper() for m in dsp.cell_list(cells[3], list_sep)),
                )
            )
        return out

    def parse_location_query(self, data: bytes) -> LocationQuery:
        msg = parse(data)
        self._expect(msg, ("QRY", "Q01"))
        msg.require("QRD")
        return LocationQuery(
            header=request_header(msg),
            query_id=self._query_id(msg),
            modality=self._read(msg, "location_query.modality").upper(),
        )

    def build_location_response(
        self, query: LocationQuery, locations: Iterable[Location]
    ) -> OutboundMessage:
        sep, list_sep = self._opt("dsp_separator"), self._opt("dsp_list_separator")
        rows = [
            dsp.encode_row(
                dsp.LOCATION_TAG, [loc.id, loc.name, loc.address, loc.modalities], sep, list_sep
            )
            for loc in locations
        ]
        echo = [
            self._qrd("D", query.query_id, self._LOCATION_WHAT, self._LOCATION_DEPT),
            SegmentBuilder("QRF", "RAD"),
        ]
        self._place(echo, "location_query.modality", query.modality)
        return self._display_response(query.header, query.query_id, echo, rows)

    def _display_response(
        self, header: RequestHeader, query_id: str, echo: list[SegmentBuilder], rows: list[str]
    ) -> OutboundMessage:
        segments = self._query_ack(AckCode.AA, header.control_id, query_id, bool(rows))
        segments += echo
        # DSR requires at least one DSP: an empty answer gets one untagged line, which readers skip.
        lines = rows or ["NO DATA"]
        segments += [
            SegmentBuilder("DSP", str(i), None, row) for i, row in enumerate(lines, start=1)
        ]
        return self._respond(header, ("DSR", "Q01", "DSR_Q01"), segments)

    # ---- slots and booking: per dialect -------------------------------------------------------------------

    SLOT_QUERY: ClassVar[tuple[str, str, str]]
    """MSH-9 of the slot query."""
    BOOKING_ANSWERS: ClassVar[tuple[tuple[str, str], ...]]
    """Message types accepted as the answer to a booking request (``("ACK", "")`` = any ACK)."""
    BOOKING_ANSWER: ClassVar[tuple[str, str, str]]
    """MSH-9 of the booking answer we build as responder (an empty trigger = the request's)."""

    @abc.abstractmethod
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
        """Body of the slot query (also echoed by the responder where the answer repeats it), its QRD-1
        ``now`` (else the clock's time)."""

    def build_slot_query(
        self,
        location_id: str,
        modality: str,
        start: datetime,
        end: datetime,
        *,
        limit: int | None = None,
    ) -> OutboundMessage:
        """Open slots for ``modality`` at ``location_id`` starting in [start, end)."""
        cid = self.control_ids()

        def build(control_id: str, now: datetime) -> bytes:
            segments = self._slot_query_segments(
                control_id,
                now=now,
                location_id=location_id,
                modality=modality,
                start=start,
                end=end,
                limit=limit,
            )
            return self._send(self.SLOT_QUERY, segments, control_id, now=now).payload

        # The same question again is its template with this query's id and time (querytemplate.py).
        question = (location_id, modality, start, end, limit)
        return OutboundMessage(cid, self.query_templates.build(question, cid, self.clock(), build))

    @abc.abstractmethod
    def parse_slot_response(self, data: bytes, expected_control_id: str) -> list[Slot]: ...

    @abc.abstractmethod
    def parse_slot_query(self, data: bytes) -> SlotQuery: ...

    @abc.abstractmethod
    def build_slot_response(self, query: SlotQuery, slots: Iterable[Slot]) -> OutboundMessage: ...

    @abc.abstractmethod
    def build_booking(self, order: OrderRef, slot: Slot, appointment_id: str) -> OutboundMessage:
        """Ask the RIS to book ``slot`` for ``order``; ``appointment_id`` is ours (placer), unique per booking."""

    @abc.abstractmethod
    def parse_booking_request(self, data: bytes) -> BookingRequest: ...

    def _booked_segments(
        self, request: BookingRequest, appointment_id: str, slot: Slot | None
    ) -> list[SegmentBuilder]:
        """What a positive booking answer carries after MSA (nothing in a bare ACK)."""
        del request, appointment_id, slot
        return []

    def build_booking_response(
        self,
        request: BookingRequest,
        *,
        accepted: bool,
        appointment_id: str = "",
        reason: str = "",
        code: AckCode | None = None,
        slot: Slot | None = None,
    ) -> OutboundMessage:
        """Answer a booking request; a rejection defaults to AE (slot taken: the sender must not resend)."""
        ack_code = code or (AckCode.AA if accepted else AckCode.AE)
        segments = [_ack.msa_segment(ack_code, request.header.control_id, reason)]
        if ack_code.is_success:
            segments += self._booked_segments(request, appointment_id, slot)
        else:
            segments.append(_ack.err_segment(self.version, "207", reason))
        self._place(segments, "booking_response.appointment_id", appointment_id)
        msg_type, trigger, structure = self.BOOKING_ANSWER
        return self._respond(
            request.header, (msg_type, trigger or request.header.trigger, structure), segments
        )

    def parse_booking_response(self, data: bytes, expected_control_id: str) -> BookingResult:
        """AA = booked; AE/AR (in the answer or a general ACK) = rejected, with the reason."""
        msg = parse(data)
        self._expect(msg, *self.BOOKING_ANSWERS)
        ack = self._answer(msg, expected_control_id)
        return self._booking_result(ack, self._read(msg, "booking_response.appointment_id"))

    def _booking_result(self, ack: Ack, appointment_id: str) -> BookingResult:
        accepted = ack.code is AckCode.AA
        return BookingResult(
            accepted=accepted,
            ack_code=ack.code,
            appointment_id=appointment_id if accepted else "",
            reason="" if accepted else (ack.text or f"booking rejected ({ack.code.value})"),
            error_code=ack.error_code,
        )

    # ---- shared: query errors, orders, SIU, ACK ------------------------------------------------------------

    def build_query_error(
        self, header: RequestHeader, reason: str, *, code: AckCode = AckCode.AE
    ) -> OutboundMessage:
        """A general ACK rejecting a request (simulator fault switch, unknown location, ...)."""
        segments = [
            _ack.msa_segment(code, header.control_id, reason),
            _ack.err_segment(self.version, "207", reason),
        ]
        return self._respond(header, ("ACK", header.trigger, "ACK"), segments)

    def parse_order(self, data: bytes | Message) -> Order:
        """ORM^O01 from the RIS, with this site's facility/modality/procedure placements."""
        return _orders.parse_order(
            data,
            facility=self._required_path("order.facility"),
            modality=self._required_path("order.modality"),
            procedure=self._required_path("order.procedure"),
            tz=self.tz,
        )

    def _required_path(self, key: str) -> FieldPath:
        path = self.paths[key]
        assert path is not None  # only optional placements can be None
        return path

    def build_order(self, order: Order, *, receiver: Party | None = None) -> OutboundMessage:
        """ORM^O01 as the RIS would send it (simulator, replay); keeps the order's own version."""
        return _orders.build_order(
            order,
            sender=self.remote,
            receiver=receiver or self.local,
            clock=self.clock,
            control_ids=self.control_ids,
            tz=self.tz,
            with_offset=self.with_offset,
            charset=self.charset,
        )

    def build_siu_s12(
        self,
        appointment: Appointment,
        order: OrderRef,
        *,
        receiver: Party,
        trigger: str = "S12",
        filler_status: str = "Booked",
    ) -> OutboundMessage:
        """SIU (S12 by default) to the EMR named by the route (``receiver`` = MSH-5/6).

        The same structure serves S13 (reschedule), S14 (modify) and S15 (cancel, with
        ``filler_status="Cancelled"``), should the daemon notify those later.
        """
        return self._siu(
            appointment,
            order,
            receiver=receiver,
            trigger=trigger,
            filler_status=filler_status,
            event_reason=SIU_EVENTS["S12"][0],
        )

    def _siu(
        self,
        appointment: Appointment,
        order: OrderRef,
        *,
        receiver: Party,
        trigger: str,
        filler_status: str,
        event_reason: tuple[str, str, str],
    ) -> OutboundMessage:
        if not order.mrn_authority and self._opt("mrn_authority"):
            order = _with_authority(order, self._opt("mrn_authority"))
        return _siu.build_siu(
            appointment,
            order,
            version=self.version,
            sender=self.local,
            receiver=receiver,
            trigger=trigger,
            clock=self.clock,
            control_ids=self.control_ids,
            tz=self.tz,
            with_offset=self.with_offset,
            charset=self.charset,
            filler_contact=split_xcn(self._opt("siu_filler_contact")),
            entered_by=split_xcn(self._opt("siu_entered_by")),
            note=self._opt("siu_note"),
            filler_status=filler_status,
            event_reason=event_reason,
        )

    def build_siu_change(
        self,
        appointment: Appointment,
        order: OrderRef,
        *,
        receiver: Party,
        change: ChangeKind,
        reason: str = "",
    ) -> OutboundMessage:
        """SIU^S13/S14/S15/S17 for ``change`` (SCH-6 event reason, SCH-25 Booked/Cancelled/Deleted).

        ``appointment`` is the record as it stands after the change (a reschedule: the new slot). ``reason``
        replaces the SCH-6 text; it goes to the EMR only, never to a log.
        """
        return self._siu_event(appointment, order, change.siu_trigger, receiver, reason)

    def build_siu_no_show(
        self, appointment: Appointment, order: OrderRef, *, receiver: Party, reason: str = ""
    ) -> OutboundMessage:
        """SIU^S26: the patient did not come (SCH-25 ``Noshow``); what a RIS sends, and the
        simulated RIS's staff action."""
        return self._siu_event(appointment, order, "S26", receiver, reason)

    def _siu_event(
        self,
        appointment: Appointment,
        order: OrderRef,
        trigger: str,
        receiver: Party,
        reason: str,
    ) -> OutboundMessage:
        (code, text, system), status = SIU_EVENTS[trigger]
        return self._siu(
            appointment,
            order,
            receiver=receiver,
            trigger=trigger,
            filler_status=status,
            event_reason=(code, reason or text, system),
        )

    def parse_siu(self, data: bytes | Message) -> SiuMessage:
        return _siu.parse_siu(data, tz=self.tz)

    # ---- lifecycle toward the RIS: reschedule and cancel ----------------------------------------------------

    CHANGE_ANSWERS: ClassVar[tuple[tuple[str, str], ...]]
    """Message types accepted as the answer to a reschedule or cancel (``("ACK", "")`` = any ACK)."""

    @abc.abstractmethod
    def build_cancel(
        self, appointment: Appointment, order: OrderRef, *, reason: str = ""
    ) -> OutboundMessage:
        """Ask the RIS to cancel the booked ``appointment`` (SRM^S04 / ORM^O01 ORC-1 CA)."""

    @abc.abstractmethod
    def build_reschedule(
        self, appointment: Appointment, order: OrderRef, slot: Slot, *, reason: str = ""
    ) -> OutboundMessage:
        """Ask the RIS to move the booked ``appointment`` to ``slot`` (SRM^S02 / ORM^O01 ORC-1 XO)."""

    @abc.abstractmethod
    def parse_change_request(self, data: bytes) -> ChangeRequest:
        """Responder side: a reschedule or cancel request."""

    @abc.abstractmethod
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
        """Responder side: answer a change. A refusal without ``code`` is the dialect's "unable to"
        (ch10: AE; qie-2.3: ORR^O02 ORC-1 UC for a cancel, AE for a reschedule); ``code`` AE/AR forces a
        general error ACK. ``slot`` is the appointment's slot after the change (echoed where the answer
        carries a schedule)."""

    def parse_change_response(self, data: bytes, expected_control_id: str) -> ChangeResult:
        """AA without a refusing ORC-1 = done; AE/AR, or ORC-1 UC/UX (unable to cancel/change) = refused."""
        msg = parse(data)
        self._expect(msg, *self.CHANGE_ANSWERS)
        ack = self._answer(msg, expected_control_id)
        orc = msg.first("ORC")
        control = orc.get(1).strip().upper() if orc else ""
        accepted = ack.code is AckCode.AA and control not in _REFUSING_CONTROLS
        reason = ""
        if not accepted:
            orc_reason = (orc.get(16, 2) or orc.get(16, 1)) if orc else ""
            reason = ack.text or orc_reason or f"change refused ({control or ack.code.value})"
        return ChangeResult(
            accepted=accepted,
            ack_code=ack.code,
            order_control=control,
            filler_appointment_id=(
                self._read(msg, "booking_response.appointment_id") if accepted else ""
            ),
            reason=reason,
            error_code=ack.error_code,
        )

    def parse_ack(self, data: bytes, expected_control_id: str) -> Ack:
        return _ack.parse_ack(data, expected_control_id)

    def build_ack(
        self,
        inbound: Message | bytes,
        code: AckCode | str,
        *,
        text: str = "",
        error_code: str = "",
        error_location: str = "",
    ) -> OutboundMessage:
        msg = inbound if isinstance(inbound, Message) else parse(inbound)
        return _ack.build_ack(
            msg,
            code,
            text=text,
            error_code=error_code,
            error_location=error_location,
            sender=self.local,
            clock=self.clock,
            control_ids=self.control_ids,
            tz=self.tz,
            with_offset=self.with_offset,
        )

    def build_nak(self, data: bytes, reason: str, *, error_code: str = "100") -> OutboundMessage:
        return _ack.build_nak(
            data,
            reason,
            sender=self.local,
            error_code=error_code,
            clock=self.clock,
            control_ids=self.control_ids,
            tz=self.tz,
            default_version=self.version,
        )


_REFUSING_CONTROLS = frozenset({"UC", "UX", "UA", "UM", "UD"})
"""ORC-1 "unable to" answers (table 0119): cancel, change, accept, modify, discontinue."""


def _with_authority(order: OrderRef, authority: str) -> OrderRef:
    return replace(order, mrn_authority=authority)
