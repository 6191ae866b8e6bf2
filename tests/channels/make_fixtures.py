"""Regenerate the *built* fixtures (one per request and response of each dialect) from the builders.

    .venv/bin/python -m tests.channels.make_fixtures

Hand-written fixtures (orders from the RIS, vendor quirks, relay SIU, negatives) are not touched. Files are
written with LF segment separators for readable diffs; the parsers and the replay tool accept LF and CR.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from channels import AckCode, Dialect
from channels.changes import ChangeKind
from tests.channels.samples import (
    APPOINTMENT,
    DIALECT_NAMES,
    EMR,
    FIXTURES,
    LOCATIONS,
    ORDER,
    SLOTS,
    WINDOW,
    requester,
    responder,
)


def built_fixtures() -> dict[str, bytes]:
    """Relative path -> payload (CR separators) for every message each dialect builds."""
    out: dict[str, bytes] = {}
    for name in DIALECT_NAMES:
        us, ris = requester(name), responder(name)
        out.update(_exchange(name, us, ris))
        out.update(_changes(name, requester(name), responder(name)))
    return out


def _exchange(name: str, us: Dialect, ris: Dialect) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    q = us.build_location_query("CT")
    out[f"locations/QRY_Q01.{name}.hl7"] = q.payload
    out[f"locations/DSR_Q01.{name}.hl7"] = ris.build_location_response(
        ris.parse_location_query(q.payload), LOCATIONS
    ).payload

    q = us.build_slot_query("DTWN", "CT", *WINDOW)
    query = ris.parse_slot_query(q.payload)
    req, resp = ("SQM_S25", "SQR_S25") if us.SLOT_QUERY[0] == "SQM" else ("QRY_Q01", "DSR_Q01")
    out[f"slots/{req}.{name}.hl7"] = q.payload
    out[f"slots/{resp}.{name}.hl7"] = ris.build_slot_response(query, SLOTS).payload
    out[f"slots/{resp}.no-slots.{name}.hl7"] = ris.build_slot_response(query, []).payload

    b = us.build_booking(ORDER, SLOTS[0], APPOINTMENT.id)
    booking = ris.parse_booking_request(b.payload)
    req, resp = ("SRM_S01", "SRR_S01") if us.BOOKING_ANSWER[0] == "SRR" else ("ORM_O01", "ACK_O01")
    out[f"booking/{req}.{name}.hl7"] = b.payload
    out[f"booking/{resp}.booked.{name}.hl7"] = ris.build_booking_response(
        booking, accepted=True, appointment_id=APPOINTMENT.filler_appointment_id, slot=SLOTS[0]
    ).payload
    out[f"booking/{resp}.rejected-AE.{name}.hl7"] = ris.build_booking_response(
        booking, accepted=False, reason="Requested slot no longer available"
    ).payload
    out[f"booking/{resp}.rejected-AR.{name}.hl7"] = ris.build_booking_response(
        booking, accepted=False, code=AckCode.AR, reason="Booking interface paused"
    ).payload

    siu = us.build_siu_s12(APPOINTMENT, ORDER, receiver=EMR)
    out[f"siu/SIU_S12.{name}.hl7"] = siu.payload
    out[f"ack/ACK_S12.AA.{name}.hl7"] = responder(name).build_ack(siu.payload, AckCode.AA).payload
    out[f"ack/ACK_S12.AE.{name}.hl7"] = (
        responder(name)
        .build_ack(
            siu.payload,
            AckCode.AE,
            text="Department not mapped",
            error_code="103",
            error_location="AIL-3",
        )
        .payload
    )
    return out


def _changes(name: str, us: Dialect, ris: Dialect) -> dict[str, bytes]:
    """Cancel and reschedule toward the RIS with their answers, and S13/S14/S15/S17 to the EMR."""
    out: dict[str, bytes] = {}
    ch10 = name == "ch10-2.5.1"
    cancel = us.build_cancel(APPOINTMENT, ORDER, reason="Patient request")
    c = ris.parse_change_request(cancel.payload)
    moved = us.build_reschedule(APPOINTMENT, ORDER, SLOTS[1])
    m = ris.parse_change_request(moved.payload)
    fid = APPOINTMENT.filler_appointment_id
    if ch10:
        out[f"changes/SRM_S04.{name}.hl7"] = cancel.payload
        out[f"changes/SRR_S04.cancelled.{name}.hl7"] = ris.build_change_response(
            c, accepted=True, filler_appointment_id=fid
        ).payload
        out[f"changes/SRR_S04.refused-AE.{name}.hl7"] = ris.build_change_response(
            c, accepted=False, reason="Exam already in progress"
        ).payload
        out[f"changes/SRM_S02.{name}.hl7"] = moved.payload
        out[f"changes/SRR_S02.rescheduled.{name}.hl7"] = ris.build_change_response(
            m, accepted=True, filler_appointment_id=fid, slot=SLOTS[1]
        ).payload
        out[f"changes/SRR_S02.rejected-AE.{name}.hl7"] = ris.build_change_response(
            m, accepted=False, reason="Requested slot no longer available"
        ).payload
    else:
        out[f"changes/ORM_O01.CA-cancel.{name}.hl7"] = cancel.payload
        out[f"changes/ORR_O02.CR-cancelled.{name}.hl7"] = ris.build_change_response(
            c, accepted=True
        ).payload
        out[f"changes/ORR_O02.UC-unable.{name}.hl7"] = ris.build_change_response(
            c, accepted=False, reason="Exam already in progress"
        ).payload
        out[f"changes/ACK_O01.cancel-rejected-AR.{name}.hl7"] = ris.build_change_response(
            c, accepted=False, code=AckCode.AR, reason="Order interface paused"
        ).payload
        out[f"changes/ORM_O01.XO-reschedule.{name}.hl7"] = moved.payload
        out[f"changes/ACK_O01.rescheduled.{name}.hl7"] = ris.build_change_response(
            m, accepted=True
        ).payload
        out[f"changes/ACK_O01.reschedule-rejected-AE.{name}.hl7"] = ris.build_change_response(
            m, accepted=False, reason="Requested slot no longer available"
        ).payload
    after = {ChangeKind.RESCHEDULE: replace(APPOINTMENT, slot=SLOTS[1])}
    for kind in ChangeKind:
        siu = us.build_siu_change(after.get(kind, APPOINTMENT), ORDER, receiver=EMR, change=kind)
        out[f"siu/SIU_{kind.siu_trigger}.{name}.hl7"] = siu.payload
    return out


def to_file_text(payload: bytes) -> bytes:
    return payload.replace(b"\r", b"\n")


def main() -> None:
    for rel, payload in built_fixtures().items():
        path = FIXTURES / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(to_file_text(payload))
        print(Path(rel))


if __name__ == "__main__":
    main()
