"""Reschedule and cancel toward the RIS (SRM^S02/S04, ORM CA/XO), their answers, and S13/S14/S15/S17 to EMRs.

Every built message is validated by hl7apy strict; the property tests check that what the daemon writes is what
the simulated RIS reads back, whatever the ids and the reason contain.
"""

from __future__ import annotations

import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels import (
    AckCode,
    Appointment,
    ConfigError,
    ControlIdMismatch,
    Dialect,
    OrderRef,
    OutboundMessage,
    ResponseError,
    Slot,
    parse_order,
    parse_siu,
)
from channels.changes import ChangeKind, change_of_order, change_of_siu
from tests.channels.hl7check import assert_valid_hl7
from tests.channels.samples import (
    APPOINTMENT,
    EMR,
    FIXTURES,
    ORDER,
    SLOTS,
    TZ,
    requester,
    responder,
)

MOVED = SLOTS[1]


def _request(us: Dialect, kind: ChangeKind) -> OutboundMessage:
    if kind is ChangeKind.CANCEL:
        return us.build_cancel(APPOINTMENT, ORDER)
    return us.build_reschedule(APPOINTMENT, ORDER, MOVED)


def test_cancel_request_carries_both_ids_and_the_reason(dialect_name: str) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    out = us.build_cancel(APPOINTMENT, ORDER, reason="Patient request")
    assert_valid_hl7(out.payload)
    req = ris.parse_change_request(out.payload)
    assert req.kind is ChangeKind.CANCEL
    assert (req.appointment_id, req.filler_appointment_id) == ("SMS-APT-0001", "FIL-APT-9001")
    assert (req.order_id, req.filler_order_id, req.mrn) == ("PLC100045", "ACC00012345", "MRN00001")
    assert (req.start, req.duration_minutes) == (SLOTS[0].start, 30)
    assert (req.location_id, req.modality, req.reason) == ("DTWN", "CT", "Patient request")


def test_cancel_names_the_booked_slot_when_the_ris_gave_no_appointment_id(
    dialect_name: str,
) -> None:
    """qie-2.3 bookings are answered by a bare ACK: the RIS knows the appointment by the slot we booked."""
    us, ris = requester(dialect_name), responder(dialect_name)
    booked = replace(APPOINTMENT, filler_appointment_id="")
    req = ris.parse_change_request(us.build_cancel(booked, ORDER).payload)
    assert req.filler_appointment_id == "SLOT-7001"


def test_reschedule_request_carries_the_new_timing(dialect_name: str) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    out = us.build_reschedule(APPOINTMENT, ORDER, MOVED)
    assert_valid_hl7(out.payload)
    req = ris.parse_change_request(out.payload)
    assert req.kind is ChangeKind.RESCHEDULE
    assert req.appointment_id == "SMS-APT-0001"
    assert (req.start, req.duration_minutes, req.location_id) == (MOVED.start, 45, "DTWN")
    if dialect_name == "ch10-2.5.1":
        # S02: "the new requested start ... along with the existing placer and filler ids".
        assert out.payload.split(b"\r")[0].split(b"|")[8] == b"SRM^S02^SRM_S01"
        assert req.filler_appointment_id == "FIL-APT-9001"
    else:
        # XO like the booking: the new slot's id travels where the booking put it (OBR-20).
        assert b"ORC|XO|" in out.payload
        assert req.slot_id == "SLOT-7002"


def test_ch10_sites_can_send_the_new_slot_id() -> None:
    overrides: dict[str, object] = {"reschedule.slot_id": "AIS-3.4", "change.reason": "ARQ-6.2"}
    us, ris = requester("ch10-2.5.1", overrides), responder("ch10-2.5.1", overrides)
    out = us.build_reschedule(APPOINTMENT, ORDER, MOVED, reason="Patient asked")
    assert_valid_hl7(out.payload)
    req = ris.parse_change_request(out.payload)
    assert (req.slot_id, req.reason) == ("SLOT-7002", "Patient asked")


def test_change_placements_are_checked() -> None:
    with pytest.raises(ConfigError, match="does not carry"):
        requester("ch10-2.5.1", {"change.reason": "PID-5"})
    with pytest.raises(ConfigError, match="reschedule.slot_id"):
        requester("qie-2.3", {"reschedule.slot_id": "OBR-20"})


@pytest.mark.parametrize("kind", [ChangeKind.CANCEL, ChangeKind.RESCHEDULE])
def test_accepted_answer(dialect_name: str, kind: ChangeKind) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    out = _request(us, kind)
    req = ris.parse_change_request(out.payload)
    answer = ris.build_change_response(
        req, accepted=True, filler_appointment_id="FIL-APT-9001", slot=MOVED
    )
    assert_valid_hl7(answer.payload)
    result = us.parse_change_response(answer.payload, out.control_id)
    assert result.accepted and result.ack_code is AckCode.AA and not result.reason
    if dialect_name == "ch10-2.5.1":
        assert result.filler_appointment_id == "FIL-APT-9001"
        status = b"Cancelled^Cancelled^HL70278" if kind is ChangeKind.CANCEL else b"Booked^Booked"
        assert status in answer.payload
    elif kind is ChangeKind.CANCEL:
        assert result.order_control == "CR"


def test_unable_to_cancel_is_a_refusal_with_the_reason(dialect_name: str) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    out = us.build_cancel(APPOINTMENT, ORDER)
    req = ris.parse_change_request(out.payload)
    answer = ris.build_change_response(req, accepted=False, reason="Exam already in progress")
    assert_valid_hl7(answer.payload)
    result = us.parse_change_response(answer.payload, out.control_id)
    assert not result.accepted and result.reason == "Exam already in progress"
    if dialect_name == "qie-2.3":
        # ORR^O02 with MSA AA but ORC-1 UC: the message was fine, the cancel was not done.
        assert (result.ack_code, result.order_control) == (AckCode.AA, "UC")
    else:
        assert result.ack_code is AckCode.AE


def test_uc_reason_is_read_from_orc16_when_msa3_is_empty() -> None:
    us = requester("qie-2.3")
    out = us.build_cancel(APPOINTMENT, ORDER)
    answer = (
        "MSH|^~\\&|SYNAPSERIS|RADCO|RADSCHED|RADSCHED|20250114090000||ORR^O02|R1|P|2.3\r"
        f"MSA|AA|{out.control_id}\r"
        "ORC|UC|PLC100045|ACC00012345||||1|||||||||UC^Study already read^L\r"
    ).encode()
    result = us.parse_change_response(answer, out.control_id)
    assert not result.accepted and result.reason == "Study already read"


@pytest.mark.parametrize("code", [AckCode.AE, AckCode.AR])
@pytest.mark.parametrize("kind", [ChangeKind.CANCEL, ChangeKind.RESCHEDULE])
def test_error_acks_are_refusals(dialect_name: str, code: AckCode, kind: ChangeKind) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    out = _request(us, kind)
    req = ris.parse_change_request(out.payload)
    answer = ris.build_change_response(req, accepted=False, code=code, reason="Slot taken")
    assert_valid_hl7(answer.payload)
    result = us.parse_change_response(answer.payload, out.control_id)
    assert (result.accepted, result.ack_code, result.reason) == (False, code, "Slot taken")
    # A general ACK (the simulator's NAK switch) reads the same way.
    nak = ris.build_query_error(req.header, "Slot taken", code=code)
    assert us.parse_change_response(nak.payload, out.control_id) == result


def test_an_answer_to_another_request_is_not_applied(dialect_name: str) -> None:
    """MSA-2 must name our MSH-10: a late answer to an earlier cancel never cancels this one."""
    us, ris = requester(dialect_name), responder(dialect_name)
    first = us.build_cancel(APPOINTMENT, ORDER)
    second = us.build_cancel(replace(APPOINTMENT, id="SMS-APT-0002"), ORDER)
    late = ris.build_change_response(ris.parse_change_request(first.payload), accepted=True)
    with pytest.raises(ControlIdMismatch):
        us.parse_change_response(late.payload, second.control_id)


def test_commit_accept_only_is_not_an_answer(dialect_name: str) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    out = us.build_cancel(APPOINTMENT, ORDER)
    ca = ris.build_ack(out.payload, AckCode.CA)
    with pytest.raises(ResponseError, match="commit"):
        us.parse_change_response(ca.payload, out.control_id)


def test_qie_refuses_other_order_controls_as_change_requests() -> None:
    us, ris = requester("qie-2.3"), responder("qie-2.3")
    booking = us.build_booking(ORDER, SLOTS[0], APPOINTMENT.id)
    assert ris.parse_change_request(booking.payload).kind is ChangeKind.RESCHEDULE
    nw = booking.payload.replace(b"ORC|XO|", b"ORC|NW|")
    with pytest.raises(Exception, match="ORC-1 NW"):
        ris.parse_change_request(nw)


# ---- notifications to EMRs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "trigger", "status"),
    [
        (ChangeKind.RESCHEDULE, "S13", "Booked"),
        (ChangeKind.MODIFY, "S14", "Booked"),
        (ChangeKind.CANCEL, "S15", "Cancelled"),
        (ChangeKind.DELETE, "S17", "Deleted"),
    ],
)
def test_siu_change_notifications(
    dialect_name: str, kind: ChangeKind, trigger: str, status: str
) -> None:
    us = requester(dialect_name)
    after = replace(APPOINTMENT, slot=MOVED) if kind is ChangeKind.RESCHEDULE else APPOINTMENT
    s12 = parse_siu(us.build_siu_s12(APPOINTMENT, ORDER, receiver=EMR).payload, tz=TZ)
    out = us.build_siu_change(after, ORDER, receiver=EMR, change=kind, reason="")
    assert_valid_hl7(out.payload)
    siu = parse_siu(out.payload, tz=TZ)
    assert siu.trigger == trigger and siu.filler_status.split("^")[0] == status
    assert change_of_siu(siu) is kind
    # Same SCH-1/SCH-2 as the S12 it refers to, so the EMR finds the appointment.
    assert (siu.placer_appointment_id, siu.filler_appointment_id) == (
        s12.placer_appointment_id,
        s12.filler_appointment_id,
    )
    assert siu.start == after.slot.start and siu.event_reason
    assert b"PID|1||MRN00001" in out.payload


def test_siu_cancel_reason_goes_into_sch6(dialect_name: str) -> None:
    out = requester(dialect_name).build_siu_change(
        APPOINTMENT, ORDER, receiver=EMR, change=ChangeKind.CANCEL, reason="Patient request"
    )
    assert parse_siu(out.payload, tz=TZ).event_reason == "Patient request"
    assert b"CANCEL^Patient request^L" in out.payload


# ---- changes made by staff in the RIS ----------------------------------------------------------------------


def test_ris_reschedule_and_delete_fixtures_are_read() -> None:
    moved = parse_siu(
        (FIXTURES / "siu/SIU_S13.relay-reschedule-from-ris.2.3.hl7").read_bytes(), tz=TZ
    )
    assert change_of_siu(moved) is ChangeKind.RESCHEDULE
    assert moved.start == datetime(2025, 1, 16, 14, 0, tzinfo=TZ)
    assert moved.filler_appointment_id == "FIL-APT-9101"
    deleted = parse_siu(
        (FIXTURES / "siu/SIU_S17.relay-delete-from-ris.2.5.1.hl7").read_bytes(), tz=TZ
    )
    assert change_of_siu(deleted) is ChangeKind.DELETE
    assert deleted.event_reason == "Entered in error"
    cancelled = parse_siu(
        (FIXTURES / "siu/SIU_S15.relay-cancel-from-ris.2.5.1.hl7").read_bytes(), tz=TZ
    )
    assert change_of_siu(cancelled) is ChangeKind.CANCEL
    booked = parse_siu((FIXTURES / "siu/SIU_S12.relay-from-ris.2.3.hl7").read_bytes(), tz=TZ)
    assert change_of_siu(booked) is None


@pytest.mark.parametrize(
    ("fixture", "change"),
    [
        ("ORM_O01.CA-cancel.2.3.hl7", ChangeKind.CANCEL),
        ("ORM_O01.OC-filler-cancel.2.3.hl7", ChangeKind.CANCEL),
        ("ORM_O01.DC-discontinue.2.5.1.hl7", ChangeKind.CANCEL),
        ("ORM_O01.NW.2.3.hl7", None),
    ],
)
def test_order_controls_from_the_ris(fixture: str, change: ChangeKind | None) -> None:
    order = parse_order((FIXTURES / "orders" / fixture).read_bytes())
    assert change_of_order(order) is change
    assert order.order_id == "PLC100045" or change is None


def test_order_xo_with_a_time_is_a_reschedule() -> None:
    order = parse_order((FIXTURES / "orders/ORM_O01.XO-quirks-lf-2.3.1.hl7").read_bytes())
    expected = ChangeKind.RESCHEDULE if order.scheduled_start else None
    assert change_of_order(order) is expected


# ---- properties --------------------------------------------------------------------------------------------

_ID = st.text(
    alphabet=string.ascii_uppercase + string.digits + "-_.|^&~\\", min_size=1, max_size=20
)
_REASON = st.text(
    alphabet=string.ascii_letters + string.digits + string.punctuation + " ", max_size=60
).map(str.strip)
_START = st.datetimes(
    min_value=datetime(2025, 1, 1),
    max_value=datetime(2030, 12, 31),
    timezones=st.just(TZ),
    allow_imaginary=False,
).map(lambda d: d.replace(second=0, microsecond=0))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    appointment_id=_ID,
    filler_id=_ID,
    order_id=_ID,
    reason=_REASON,
    start=_START,
    minutes=st.integers(min_value=5, max_value=240),
    cancel=st.booleans(),
)
def test_change_requests_round_trip(
    dialect_name: str,
    appointment_id: str,
    filler_id: str,
    order_id: str,
    reason: str,
    start: datetime,
    minutes: int,
    cancel: bool,
) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    order = OrderRef(order_id=order_id, mrn="MRN1", placer_order_id=order_id, modality="CT")
    slot = Slot("SLOT-1", "DTWN", "CT", start, minutes)
    appointment = Appointment(
        appointment_id, order_id, slot, APPOINTMENT.location, filler_appointment_id=filler_id
    )
    # A day later in real time: wall-clock arithmetic could land in a spring-forward gap.
    new = replace(
        slot, id="SLOT-2", start=(start.astimezone(UTC) + timedelta(days=1)).astimezone(TZ)
    )
    out = (
        us.build_cancel(appointment, order, reason=reason)
        if cancel
        else us.build_reschedule(appointment, order, new, reason=reason)
    )
    assert_valid_hl7(out.payload)
    req = ris.parse_change_request(out.payload)
    assert req.kind is (ChangeKind.CANCEL if cancel else ChangeKind.RESCHEDULE)
    assert (req.appointment_id, req.order_id) == (appointment_id, order_id)
    # Instants compared in UTC: under PEP 495 a time in the November fold never equals one in another zone.
    assert req.start.astimezone(UTC) == (slot.start if cancel else new.start).astimezone(UTC)
    assert req.duration_minutes == minutes
    if reason:
        assert req.reason == reason
    if cancel or dialect_name == "ch10-2.5.1":
        assert req.filler_appointment_id == filler_id
    answer = ris.build_change_response(req, accepted=False, reason=reason or "no")
    assert_valid_hl7(answer.payload)
    result = us.parse_change_response(answer.payload, out.control_id)
    assert not result.accepted
    # An ACK's text is one line: runs of whitespace come back as one space (channels.ack).
    assert result.reason == " ".join((reason or "no").split())[:80]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    appointment_id=_ID,
    filler_id=_ID,
    reason=_REASON,
    kind=st.sampled_from(list(ChangeKind)),
    start=_START,
)
def test_siu_changes_round_trip(
    dialect_name: str,
    appointment_id: str,
    filler_id: str,
    reason: str,
    kind: ChangeKind,
    start: datetime,
) -> None:
    appointment = replace(
        APPOINTMENT,
        id=appointment_id,
        filler_appointment_id=filler_id,
        slot=replace(SLOTS[0], start=start),
    )
    out = requester(dialect_name).build_siu_change(
        appointment, ORDER, receiver=EMR, change=kind, reason=reason
    )
    assert_valid_hl7(out.payload)
    siu = parse_siu(out.payload, tz=TZ)
    assert change_of_siu(siu) is kind
    assert (siu.placer_appointment_id, siu.filler_appointment_id) == (appointment_id, filler_id)
    # The same instant. Compared in UTC: an aware datetime in a DST fold (01:30 on the November
    # change) never equals one in another zone under PEP 495, even at the same instant.
    assert siu.start is not None
    assert siu.start.astimezone(UTC) == start.astimezone(UTC)
    if reason:
        assert siu.event_reason == reason
