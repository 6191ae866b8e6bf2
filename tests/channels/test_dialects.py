"""Both sides of every exchange, in both dialects: build -> parse gives back the values, and every built
message passes hl7apy strict validation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from channels import (
    AckCode,
    ConfigError,
    ControlIdMismatch,
    PatientName,
    ResponseError,
    get_dialect,
    parse,
)
from tests.channels.hl7check import assert_valid_hl7
from tests.channels.samples import (
    APPOINTMENT,
    EMR,
    LOCATIONS,
    ORDER,
    SLOTS,
    WINDOW,
    requester,
    responder,
)


def test_location_exchange(dialect_name: str) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    query = us.build_location_query("ct")
    assert_valid_hl7(query.payload)
    parsed = ris.parse_location_query(query.payload)
    assert parsed.modality == "CT"
    assert parsed.header.control_id == query.control_id
    answer = ris.build_location_response(parsed, LOCATIONS)
    assert_valid_hl7(answer.payload)
    assert us.parse_location_response(answer.payload, query.control_id) == LOCATIONS


def test_empty_location_answer_is_nf(dialect_name: str) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    query = us.build_location_query("MG")
    answer = ris.build_location_response(ris.parse_location_query(query.payload), [])
    assert_valid_hl7(answer.payload)
    assert b"QAK|" in answer.payload and b"|NF" in answer.payload
    assert us.parse_location_response(answer.payload, query.control_id) == []


def test_slot_exchange(dialect_name: str) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    query = us.build_slot_query("DTWN", "CT", *WINDOW)
    assert_valid_hl7(query.payload)
    parsed = ris.parse_slot_query(query.payload)
    assert (parsed.location_id, parsed.modality, parsed.start, parsed.end) == (
        "DTWN",
        "CT",
        *WINDOW,
    )
    answer = ris.build_slot_response(parsed, SLOTS)
    assert_valid_hl7(answer.payload)
    assert us.parse_slot_response(answer.payload, query.control_id) == SLOTS
    nothing = ris.build_slot_response(parsed, [])
    assert_valid_hl7(nothing.payload)
    assert us.parse_slot_response(nothing.payload, query.control_id) == []


def test_booking_accepted(dialect_name: str) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    request = us.build_booking(ORDER, SLOTS[0], "SMS-APT-0001")
    assert_valid_hl7(request.payload)
    parsed = ris.parse_booking_request(request.payload)
    assert parsed.appointment_id == "SMS-APT-0001"
    assert (parsed.order_id, parsed.filler_order_id, parsed.mrn) == (
        "PLC100045",
        "ACC00012345",
        "MRN00001",
    )
    assert (parsed.slot_id, parsed.location_id, parsed.modality) == ("SLOT-7001", "DTWN", "CT")
    assert (parsed.start, parsed.duration_minutes) == (SLOTS[0].start, 30)
    answer = ris.build_booking_response(
        parsed, accepted=True, appointment_id="FIL-APT-9001", slot=SLOTS[0]
    )
    assert_valid_hl7(answer.payload)
    result = us.parse_booking_response(answer.payload, request.control_id)
    assert result.accepted and result.ack_code is AckCode.AA and not result.reason
    # ch10 carries the filler appointment id in SRR SCH-2; a bare qie ACK has none.
    assert result.appointment_id == ("FIL-APT-9001" if dialect_name.startswith("ch10") else "")


@pytest.mark.parametrize("code", [AckCode.AE, AckCode.AR])
def test_booking_rejected(dialect_name: str, code: AckCode) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    request = us.build_booking(ORDER, SLOTS[0], "SMS-APT-0001")
    parsed = ris.parse_booking_request(request.payload)
    answer = ris.build_booking_response(
        parsed, accepted=False, reason="Requested slot no longer available", code=code
    )
    assert_valid_hl7(answer.payload)
    result = us.parse_booking_response(answer.payload, request.control_id)
    assert not result.accepted
    assert result.ack_code is code
    assert result.reason == "Requested slot no longer available"
    assert result.appointment_id == ""


def test_booking_rejected_by_general_ack(dialect_name: str) -> None:
    """An ACK (not SRR) with AE is a rejection too."""
    us, ris = requester(dialect_name), responder(dialect_name)
    request = us.build_booking(ORDER, SLOTS[0], "SMS-APT-0001")
    nak = ris.build_query_error(ris.parse_booking_request(request.payload).header, "slot taken")
    assert_valid_hl7(nak.payload)
    result = us.parse_booking_response(nak.payload, request.control_id)
    assert not result.accepted and result.ack_code is AckCode.AE and result.reason == "slot taken"


def test_reply_to_another_control_id_is_distinct(dialect_name: str) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    first = us.build_location_query("CT")
    second = us.build_location_query("CT")
    late = ris.build_location_response(ris.parse_location_query(first.payload), LOCATIONS)
    with pytest.raises(ControlIdMismatch) as info:
        us.parse_location_response(late.payload, second.control_id)
    assert info.value.received == first.control_id
    booking = us.build_booking(ORDER, SLOTS[0], "X1")
    answer = ris.build_booking_response(ris.parse_booking_request(booking.payload), accepted=True)
    with pytest.raises(ControlIdMismatch):
        us.parse_booking_response(answer.payload, "SOMETHING-ELSE")


def test_query_error_raises_response_error(dialect_name: str) -> None:
    us, ris = requester(dialect_name), responder(dialect_name)
    query = us.build_slot_query("NOWHERE", "CT", *WINDOW)
    error = ris.build_query_error(ris.parse_slot_query(query.payload).header, "Unknown location")
    assert_valid_hl7(error.payload)
    with pytest.raises(ResponseError) as info:
        us.parse_slot_response(error.payload, query.control_id)
    assert info.value.code == "AE" and info.value.reason == "Unknown location"


@pytest.mark.parametrize("dialect_name", ["ch10-2.5.1", "qie-2.3"])
def test_siu_s12(dialect_name: str) -> None:
    us = requester(dialect_name)
    out = us.build_siu_s12(APPOINTMENT, ORDER, receiver=EMR)
    assert_valid_hl7(out.payload)
    msg = parse(out.payload)
    assert (msg.receiving_application, msg.receiving_facility) == ("EPIC", "HOSP")
    sch = msg.require("SCH")
    assert sch.get(1) == "SMS-APT-0001" and sch.get(2) == "FIL-APT-9001"
    assert sch.get(6) and sch.get(16, 2) and sch.get(20) and sch.get(25) == "Booked"
    if dialect_name == "qie-2.3":
        assert (
            msg.version == "2.3"
            and sch.get(11, 4) == "20250115083000-0500"
            and msg.first("TQ1") is None
        )
    else:
        assert msg.version == "2.5.1" and msg.require("TQ1").get(7) == "20250115083000-0500"
        assert sch.get(26) == "PLC100045" and sch.get(27) == "ACC00012345"
    ais, ail = msg.require("AIS"), msg.require("AIL")
    assert (ais.get(3), ais.get(4), ais.get(7), ais.get(8)) == (
        "74177",
        "20250115083000-0500",
        "30",
        "min",
    )
    assert (ail.get(3, 4), ail.get(3, 9)) == ("DTWN", "Downtown Imaging")
    # PID from the order, no phone numbers; NTE without PHI.
    pid = msg.require("PID")
    assert pid.get(3) == "MRN00001" and pid.get(5) == "TESTPATIENT" and pid.get(13) == ""
    assert "TESTPATIENT" not in msg.require("NTE").get(3)
    siu = us.parse_siu(out.payload)
    assert siu.start == SLOTS[0].start and siu.duration_minutes == 30 and siu.location_id == "DTWN"


def test_unknown_dialect_and_bad_overrides() -> None:
    with pytest.raises(ConfigError, match="unknown dialect"):
        get_dialect("hl7-9")
    with pytest.raises(ConfigError, match="slot_query.nope"):
        get_dialect("qie-2.3", {"slot_query.nope": "QRF-1"})
    with pytest.raises(ConfigError, match="does not carry"):
        get_dialect("qie-2.3", {"booking.slot_id": "ZZZ-1"})
    with pytest.raises(ConfigError, match="field path"):
        get_dialect("ch10-2.5.1", {"booking.slot_id": "ARQ two"})
    with pytest.raises(ConfigError, match="charset"):
        get_dialect("ch10-2.5.1", {"charset": "EBCDIC"})


@pytest.mark.parametrize(
    ("name", "overrides", "needle"),
    [
        ("qie-2.3", {"slot_query": {"location_id": "QRD-8", "modality": "QRF-5"}}, b"|DTWN|SOP^"),
        ("ch10-2.5.1", {"slot_query.location_id": "AIL-3.1"}, b"AIL|1||DTWN|"),
    ],
)
def test_site_overrides_move_values(name: str, overrides: dict[str, object], needle: bytes) -> None:
    us, ris = requester(name, overrides), responder(name, overrides)
    query = us.build_slot_query("DTWN", "CT", *WINDOW)
    assert needle in query.payload
    assert_valid_hl7(query.payload)
    parsed = ris.parse_slot_query(query.payload)
    assert (parsed.location_id, parsed.modality) == ("DTWN", "CT")


def test_booking_slot_override_round_trips() -> None:
    overrides: dict[str, object] = {"booking.slot_id": "ORC-4", "timestamps_with_offset": False}
    us, ris = requester("qie-2.3", overrides), responder("qie-2.3", overrides)
    request = us.build_booking(ORDER, SLOTS[0], "SMS-APT-0001")
    assert b"ORC|XO|PLC100045|ACC00012345|SLOT-7001|" in request.payload
    assert b"-0500" not in request.payload
    assert_valid_hl7(request.payload)
    parsed = ris.parse_booking_request(request.payload)
    assert parsed.slot_id == "SLOT-7001" and parsed.start == SLOTS[0].start


def test_commit_ack_is_not_an_answer(dialect_name: str) -> None:
    us = requester(dialect_name)
    query = us.build_location_query("CT")
    commit = (
        f"MSH|^~\\&|SYNAPSERIS|RADCO|RADSCHED|RADSCHED|20250114||ACK^Q01|C1|P|2.5.1\rMSA|CA|{query.control_id}\r"
    ).encode()
    with pytest.raises(ResponseError, match="commit"):
        us.parse_location_response(commit, query.control_id)
    booking = us.build_booking(ORDER, SLOTS[0], "A1")
    with pytest.raises(ResponseError, match="commit"):
        us.parse_booking_response(
            commit.replace(query.control_id.encode(), booking.control_id.encode()),
            booking.control_id,
        )


def test_siu_non_ascii_names_and_other_triggers() -> None:
    order = replace(ORDER, name=PatientName("MÜLLER", "JOSÉ"))
    utf8 = requester("ch10-2.5.1").build_siu_s12(APPOINTMENT, order, receiver=EMR)
    assert_valid_hl7(utf8.payload)
    assert parse(utf8.payload).require("PID").get(5, 2) == "JOSÉ"
    ascii_link = requester("qie-2.3").build_siu_s12(APPOINTMENT, order, receiver=EMR)
    assert_valid_hl7(ascii_link.payload)
    assert (
        b"MULLER^JOSE" in ascii_link.payload
    )  # MSH-18 empty: transliterated, never an encoding error
    latin = requester("qie-2.3", {"charset": "8859/1"}).build_siu_s12(
        APPOINTMENT, order, receiver=EMR
    )
    assert_valid_hl7(latin.payload)
    assert parse(latin.payload).require("PID").get(5) == "MÜLLER"
    for name in ("ch10-2.5.1", "qie-2.3"):
        cancel = requester(name).build_siu_s12(
            APPOINTMENT, ORDER, receiver=EMR, trigger="S15", filler_status="Cancelled"
        )
        assert_valid_hl7(cancel.payload)
        siu = requester(name).parse_siu(cancel.payload)
        assert (siu.trigger, siu.filler_status) == ("S15", "Cancelled")
