"""Segment builders shared by several messages (PID, RGS/AIS/AIL, TQ timing, XTN), so each message module
only decides *which* segments it sends, not how a PID is spelled in each version."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from .header import version_tuple
from .message import Component, SegmentBuilder
from .model import OrderRef, PhoneCandidate, Slot
from .timestamps import format_date, format_ts


def pid_segment(
    ref: OrderRef, version: str, phones: tuple[PhoneCandidate, ...] = (), *, mrn_authority: str = ""
) -> SegmentBuilder:
    """PID with what an EMR or RIS needs to match the patient: MRN, name, date of birth, sex (and phones only
    when explicitly given, e.g. when re-emitting an order)."""
    pid = SegmentBuilder("PID", "1")
    pid.field(3, (ref.mrn, "", "", ref.mrn_authority or mrn_authority, "MR"))
    if ref.name is not None and (ref.name.family or ref.name.given):
        pid.field(5, (ref.name.family, ref.name.given, ref.name.middle))
    else:
        # PID-5 is required, and an order from POST /api/orders carries no name. Say so explicitly
        # (XPN-7 name type "U", unspecified) rather than invent one: receivers match on PID-3.
        pid.field(5, ("", "", "", "", "", "", "U"))
    if ref.date_of_birth is not None:
        pid.field(7, format_date(ref.date_of_birth))
    if ref.sex:
        pid.field(8, ref.sex)
    home = [xtn(p, version) for p in phones if p.source != "PID-14"]
    work = [xtn(p, version) for p in phones if p.source == "PID-14"]
    if home:
        pid.field(13, home)
    if work:
        pid.field(14, work)
    return pid


def xtn(phone: PhoneCandidate, version: str) -> tuple[Component, ...]:
    """One XTN in the version's form (9 components in 2.3-2.4, 12 in 2.5+)."""
    comps: list[Component] = [
        phone.formatted,
        phone.use,
        phone.equipment,
        phone.email,
        phone.country,
        phone.area,
        phone.local,
        phone.extension,
    ]
    if version_tuple(version) >= (2, 5) and phone.unformatted:
        comps += ["", "", "", phone.unformatted]
    return tuple(comps)


def tq_timing(start: datetime, minutes: int, tz: tzinfo, with_offset: bool) -> tuple[str, ...]:
    """TQ (SCH-11 / ORC-7 / OBR-27): ``^^M<minutes>^<start>^<end>`` — duration in TQ syntax, start in TQ-4."""
    end = start + timedelta(minutes=minutes)
    return (
        "",
        "",
        f"M{minutes}",
        format_ts(start, tz, with_offset=with_offset),
        format_ts(end, tz, with_offset=with_offset),
    )


def tq1_segment(start: datetime, minutes: int, tz: tzinfo, with_offset: bool) -> SegmentBuilder:
    """TQ1 (2.5+): service duration in TQ1-6 (UCUM minutes), start/end in TQ1-7/TQ1-8."""
    end = start + timedelta(minutes=minutes)
    return SegmentBuilder(
        "TQ1",
        "1",
        None,
        None,
        None,
        None,
        (str(minutes), ("min", "minute", "UCUM")),
        format_ts(start, tz, with_offset=with_offset),
        format_ts(end, tz, with_offset=with_offset),
    )


def resource_segments(
    *,
    service: tuple[str, str, str],
    location_id: str,
    location_name: str,
    location_type: str,
    start: datetime | None,
    minutes: int | None,
    tz: tzinfo,
    with_offset: bool,
) -> list[SegmentBuilder]:
    """RGS + AIS (service) + AIL (location).

    AIS-3 service, AIS-4 start, AIS-7/8 duration and units; AIL-3 = ``<id>^^^<id>^^^^^<name>`` (point of
    care and facility both carry the location id, PL-9 its name), AIL-4 location type (we send the modality),
    AIL-6 start, AIL-9/10 duration. We send no AIG/AIP, so the AIL/AIP order quirk of SQM/SQR never arises.
    """
    ts = format_ts(start, tz, with_offset=with_offset) if start is not None else ""
    dur = str(minutes) if minutes is not None else ""
    units = "min" if minutes is not None else ""
    ais = SegmentBuilder("AIS", "1", None, service, ts, None, None, dur, units)
    ail = SegmentBuilder(
        "AIL",
        "1",
        None,
        (location_id, "", "", location_id, "", "", "", "", location_name) if location_id else "",
        (location_type, location_type, "L") if location_type else None,
        None,
        ts,
        None,
        None,
        dur,
        units,
    )
    return [SegmentBuilder("RGS", "1"), ais, ail]


def service_for(order: OrderRef, slot: Slot) -> tuple[str, str, str]:
    """OBR-4/AIS-3: the procedure when known, else the modality (DICOM code, system ``DCM``) as the service."""
    if order.procedure_code:
        return (order.procedure_code, order.procedure_text, order.procedure_system)
    return (slot.modality, slot.modality, "DCM")


def split_xcn(text: str) -> tuple[str, ...]:
    """An XCN written in settings as ``id^family^given`` (always with ``^``, whatever the message delimiters)."""
    return tuple(text.split("^"))
