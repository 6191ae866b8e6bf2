"""Order intake (RIS -> daemon), and the inverse ORM^O01 builder used by the simulator, replay and tests.

What is read, in every version from 2.1 to 2.8 (docs/intake.md has the table):

* ORM^O01 (2.1-2.6, and still sent by many 2.7+ systems), OMI^O23 (imaging order, 2.5+) and OML^O21
  (laboratory order, used by some sites for imaging): the first ORC with its OBR.
* Phones: PID-13/PID-14 (2.1/2.2 a TN, later an XTN; from 2.7 XTN-1 is withdrawn, so the number is in
  XTN-5..7 or XTN-12) and, from 2.7, PID-40 (patient telecommunication information), which replaces them.
* Modality: OBR-24 (every version); an OMI without it has the modality in IPC-5 (2.5+).
* Scheduled start: ORC-7.4 / OBR-27.4 (quantity/timing, withdrawn in 2.7), then TQ1-7 (2.5+), then OBR-36.

Reading is deliberately lenient about what the standard leaves to vendors and strict about what we key on:

* ORC is required (it carries the order control), and an order id (placer or filler number) must exist; a
  message without them is answered AE (the sender must fix it), via :class:`ParseError`.
* Only the first ORC/OBR order group is read: radiology RIS send one requested procedure per ORM.
* Z-segments are preserved as text; unknown segments (EVN, ZDS, ...) are ignored, never rejected.
* A bad date of birth or scheduled time is dropped (None) rather than rejecting the order.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo

from .errors import ParseError
from .escaping import STANDARD
from .header import build
from .ids import Clock, ControlIdSource, random_control_ids, system_clock
from .message import FieldPath, Message, Segment, SegmentBuilder, parse
from .model import Order, OrderRef, OutboundMessage, Party, PatientName, PhoneCandidate
from .segments import pid_segment, tq_timing
from .timestamps import format_ts, parse_date, parse_ts

DEFAULT_FACILITY = FieldPath.parse("MSH-4")
DEFAULT_MODALITY = FieldPath.parse("OBR-24")
DEFAULT_PROCEDURE = FieldPath.parse("OBR-4")
_IPC_MODALITY = FieldPath.parse("IPC-5")

ORDER_TYPES = frozenset({("ORM", "O01"), ("OMI", "O23"), ("OML", "O21")})
"""(MSH-9.1, MSH-9.2) of the order messages :func:`parse_order` reads."""


def _obr_of(msg: Message, orc: Segment) -> Segment | None:
    """The OBR of the first order group: the first OBR after the first ORC (else any OBR)."""
    after = False
    for seg in msg.segments:
        if seg is orc:
            after = True
        elif after and seg.name == "OBR":
            return seg
        elif after and seg.name == "ORC":
            break
    return msg.first("OBR")


def _modality(msg: Message, path: FieldPath) -> str:
    value = msg.value(path).strip().upper()
    if not value and path == DEFAULT_MODALITY:
        value = msg.value(_IPC_MODALITY).strip().upper()
    return value


def parse_order(
    data: bytes | Message,
    *,
    facility: FieldPath = DEFAULT_FACILITY,
    modality: FieldPath = DEFAULT_MODALITY,
    procedure: FieldPath = DEFAULT_PROCEDURE,
    tz: tzinfo = UTC,
) -> Order:
    """Parse an ORM^O01. ``facility``/``modality``/``procedure`` are the site's field placements.

    ``procedure`` points at the code; the text and coding system are the next two components (so
    ``OBR-4.4`` reads the alternate code triplet, e.g. CPT, of ``OBR-4``).
    """
    msg = data if isinstance(data, Message) else parse(data)
    if (msg.message_type, msg.trigger) not in ORDER_TYPES:
        raise ParseError(
            "not an order message (ORM^O01, OMI^O23 or OML^O21)",
            hl7_error_code="200",
            location="MSH-9",
        )
    orc = msg.require("ORC")
    obr = _obr_of(msg, orc)
    pid = msg.first("PID")
    placer = orc.get(2) or (obr.get(2) if obr else "")
    filler = orc.get(3) or (obr.get(3) if obr else "")
    order_id = placer or filler
    if not order_id:
        raise ParseError(
            "order has neither a placer (ORC-2/OBR-2) nor a filler (ORC-3/OBR-3) number",
            hl7_error_code="101",
            location="ORC-2",
        )
    order_control = orc.get(1).upper()
    if not order_control:
        raise ParseError("ORC-1 order control is empty", hl7_error_code="101", location="ORC-1")
    proc_seg = msg.first(procedure.segment)
    c = procedure.component
    return Order(
        control_id=msg.control_id,
        sending_application=msg.sending_application,
        sending_facility=msg.sending_facility,
        version=msg.version,
        order_control=order_control,
        order_status=orc.get(5).upper(),
        placer_order_id=placer,
        filler_order_id=filler,
        order_id=order_id,
        mrn=mrn_of(pid) if pid else "",
        name=PatientName(pid.get(5, 1), pid.get(5, 2), pid.get(5, 3))
        if pid
        else PatientName("", ""),
        date_of_birth=_optional_date(pid.get(7)) if pid else None,
        sex=pid.get(8).upper() if pid else "",
        phones=_phones(pid) if pid else (),
        modality=_modality(msg, modality),
        procedure_code=proc_seg.get(procedure.field, c, repetition=procedure.repetition)
        if proc_seg
        else "",
        procedure_text=proc_seg.get(procedure.field, c + 1, repetition=procedure.repetition)
        if proc_seg
        else "",
        procedure_system=proc_seg.get(procedure.field, c + 2, repetition=procedure.repetition)
        if proc_seg
        else "",
        facility=msg.value(facility),
        scheduled_start=_scheduled(orc, obr, msg.first("TQ1"), tz),
        # Re-spelled with the standard delimiters so the text is meaningful without this message's MSH.
        z_segments=tuple(
            s.to_builder().encode(STANDARD) for s in msg.segments if s.name.startswith("Z")
        ),
    )


def mrn_of(pid: Segment) -> str:
    """PID-3: the repetition typed MR (CX-5) if any, else the first; PID-2 as a 2.3 fallback."""
    count = pid.repetition_count(3)
    for rep in range(1, count + 1):
        if pid.get(3, 5, repetition=rep).upper() == "MR" and pid.get(3, 1, repetition=rep):
            return pid.get(3, 1, repetition=rep)
    return pid.get(3, 1) or pid.get(2, 1)


def _phones(pid: Segment) -> tuple[PhoneCandidate, ...]:
    out: list[PhoneCandidate] = []
    for field, source in ((13, "PID-13"), (14, "PID-14"), (40, "PID-40")):
        for rep in range(1, pid.repetition_count(field) + 1):
            comps = pid.components(field, rep) + [""] * 12
            candidate = PhoneCandidate(
                source=source,
                formatted=comps[0],
                use=comps[1].upper(),
                equipment=comps[2],
                email=comps[3],
                country=comps[4],
                area=comps[5],
                local=comps[6],
                extension=comps[7],
                unformatted=comps[11],
            )
            if any(ch.isdigit() for ch in candidate.number) or candidate.email:
                out.append(candidate)
    return tuple(out)


def _optional_date(text: str) -> date | None:
    if not text:
        return None
    try:
        return parse_date(text)
    except ParseError:
        return None


def _scheduled(
    orc: Segment, obr: Segment | None, tq1: Segment | None, tz: tzinfo
) -> datetime | None:
    candidates = [orc.get(7, 4)]
    if obr is not None:
        candidates.append(obr.get(27, 4))
    if tq1 is not None:
        candidates.append(tq1.get(7))
    if obr is not None:
        candidates.append(obr.get(36))
    for text in candidates:
        if text:
            try:
                return parse_ts(text, tz)
            except ParseError:
                continue
    return None


def build_order(
    order: Order,
    *,
    sender: Party | None = None,
    receiver: Party,
    clock: Clock = system_clock,
    control_ids: ControlIdSource = random_control_ids,
    tz: tzinfo = UTC,
    with_offset: bool = True,
    charset: str = "",
    duration_minutes: int = 30,
) -> OutboundMessage:
    """Write ``order`` as ORM^O01 in ``order.version`` (RIS side: simulator, replay, tests)."""
    version = order.version or "2.3"
    me = sender or Party(order.sending_application, order.sending_facility)
    orc = SegmentBuilder("ORC", order.order_control, order.placer_order_id, order.filler_order_id)
    if order.order_status:
        orc.field(5, order.order_status)
    # ORC-7 and OBR-27 are required in v2.3; without a scheduled time a quantity of 1 keeps them valued.
    timing: tuple[str, ...] = (
        tq_timing(order.scheduled_start, duration_minutes, tz, with_offset)
        if order.scheduled_start is not None
        else ("1",)
    )
    orc.field(7, timing)
    obr = SegmentBuilder(
        "OBR",
        "1",
        order.placer_order_id,
        order.filler_order_id,
        (order.procedure_code, order.procedure_text, order.procedure_system),
    )
    if order.modality:
        obr.field(24, order.modality)
    obr.field(27, timing)
    if order.scheduled_start is not None:
        obr.field(36, format_ts(order.scheduled_start, tz, with_offset=with_offset))
    ref = OrderRef.from_order(order)
    segments: list[SegmentBuilder] = [pid_segment(ref, version, order.phones), orc, obr]
    segments += [SegmentBuilder.from_text(z) for z in order.z_segments]
    return build(
        sender=me,
        receiver=receiver,
        msg_type="ORM",
        trigger="O01",
        structure="ORM_O01",
        version=version,
        segments=segments,
        clock=clock,
        control_ids=control_ids,
        tz=tz,
        with_offset=with_offset,
        charset=charset,
        control_id=order.control_id or None,
    )
