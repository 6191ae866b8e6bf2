"""Every fixture parses, and round-trips: parse -> build -> parse gives the same fields.

The built fixtures must also equal what the builders produce today (regenerate them with
``python -m tests.channels.make_fixtures`` when a builder changes on purpose).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from channels import (
    Appointment,
    BookingRequest,
    Location,
    LocationQuery,
    OrderRef,
    ParseError,
    Party,
    PatientName,
    RequestHeader,
    Slot,
    SlotQuery,
    build_ack,
    build_order,
    get_dialect,
    parse,
    parse_order,
    parse_siu,
    read_ack,
)
from channels.batch import split_messages
from tests.channels.hl7check import assert_valid_hl7
from tests.channels.make_fixtures import built_fixtures, to_file_text
from tests.channels.samples import FIXTURES, TZ, requester, responder

ALL = sorted(p for p in FIXTURES.rglob("*.hl7"))
# interop/ holds batches and refusals on purpose (tests/channels/test_interop_fixtures.py).
POSITIVE = [p for p in ALL if p.parent.name not in ("negative", "interop")]


def _messages(path: Path) -> list[bytes]:
    return split_messages(path.read_bytes())


def _id(path: Path) -> str:
    return str(path.relative_to(FIXTURES))


def _dialect_of(path: Path) -> str:
    return "ch10-2.5.1" if "ch10-2.5.1" in path.name else "qie-2.3"


def test_fixture_tree_is_complete() -> None:
    names = {_id(p) for p in ALL}
    for dialect in ("ch10-2.5.1", "qie-2.3"):
        assert f"locations/QRY_Q01.{dialect}.hl7" in names
        assert f"locations/DSR_Q01.{dialect}.hl7" in names
        assert f"siu/SIU_S12.{dialect}.hl7" in names
    assert {"slots/SQM_S25.ch10-2.5.1.hl7", "slots/SQR_S25.ch10-2.5.1.hl7"} <= names
    assert {"slots/QRY_Q01.qie-2.3.hl7", "slots/DSR_Q01.qie-2.3.hl7"} <= names
    assert {"booking/SRM_S01.ch10-2.5.1.hl7", "booking/ORM_O01.qie-2.3.hl7"} <= names
    assert (FIXTURES / "README.md").exists()


@pytest.mark.parametrize(("rel", "payload"), sorted(built_fixtures().items()))
def test_built_fixture_is_current_and_valid(rel: str, payload: bytes) -> None:
    assert (FIXTURES / rel).read_bytes() == to_file_text(payload), f"regenerate {rel}"
    assert_valid_hl7(payload)


@pytest.mark.parametrize("path", POSITIVE, ids=_id)
def test_positive_fixture_parses(path: Path) -> None:
    messages = _messages(path)
    assert messages
    for data in messages:
        msg = parse(data)
        assert msg.control_id and msg.message_type and msg.version


# ---- round trips by channel -------------------------------------------------------------------------------


def _header(data: bytes) -> RequestHeader:
    """A request header whose control id is the one the response acknowledges (MSA-2)."""
    msg = parse(data)
    ack = read_ack(msg)
    return RequestHeader(
        ack.control_id,
        Party(msg.receiving_application, msg.receiving_facility),
        Party(msg.sending_application, msg.sending_facility),
        msg.version,
        msg.trigger,
        msg.charset,
    )


@pytest.mark.parametrize("path", sorted((FIXTURES / "orders").glob("*.hl7")), ids=_id)
def test_order_round_trip(path: Path) -> None:
    for data in _messages(path):
        msg = parse(data)
        first = parse_order(data)
        # A message without MSH-18 is written in 8859/1 when it carries non-ASCII text, to keep it exact.
        charset = msg.charset or ("8859/1" if msg.codec != "ascii" else "")
        rebuilt = build_order(
            first,
            receiver=Party(msg.receiving_application, msg.receiving_facility),
            charset=charset,
        )
        assert parse_order(rebuilt.payload) == first
        assert_valid_hl7(rebuilt.payload)


@pytest.mark.parametrize("path", sorted((FIXTURES / "locations").glob("*.hl7")), ids=_id)
def test_location_round_trip(path: Path) -> None:
    name = _dialect_of(path)
    data = path.read_bytes()
    if path.name.startswith("QRY"):
        query = responder(name).parse_location_query(data)
        again = responder(name).parse_location_query(
            requester(name).build_location_query(query.modality).payload
        )
        assert again.modality == query.modality
    else:
        header = _header(data)
        locations = requester(name).parse_location_response(data, header.control_id)
        rebuilt = responder(name).build_location_response(
            LocationQuery(header, "Q1", "CT"), locations
        )
        assert (
            requester(name).parse_location_response(rebuilt.payload, header.control_id) == locations
        )


@pytest.mark.parametrize("path", sorted((FIXTURES / "slots").glob("*.hl7")), ids=_id)
def test_slot_round_trip(path: Path) -> None:
    name = _dialect_of(path)
    data = path.read_bytes()
    if path.name.startswith(("QRY", "SQM")):
        q = responder(name).parse_slot_query(data)
        rebuilt = requester(name).build_slot_query(
            q.location_id, q.modality, q.start, q.end, limit=q.limit
        )
        again = responder(name).parse_slot_query(rebuilt.payload)
        assert (again.location_id, again.modality, again.start, again.end, again.limit) == (
            q.location_id,
            q.modality,
            q.start,
            q.end,
            q.limit,
        )
    else:
        header = _header(data)
        slots = requester(name).parse_slot_response(data, header.control_id)
        query = SlotQuery(header, "Q1", "DTWN", "CT", slots[0].start if slots else _T0, _T0)
        rebuilt = responder(name).build_slot_response(query, slots)
        assert requester(name).parse_slot_response(rebuilt.payload, header.control_id) == slots


@pytest.mark.parametrize("path", sorted((FIXTURES / "booking").glob("*.hl7")), ids=_id)
def test_booking_round_trip(path: Path) -> None:
    name = _dialect_of(path)
    data = path.read_bytes()
    if path.name.startswith(("SRM", "ORM")):
        req = responder(name).parse_booking_request(data)
        assert req.start is not None and req.duration_minutes is not None
        order = OrderRef(
            order_id=req.order_id,
            mrn=req.mrn,
            filler_order_id=req.filler_order_id,
            procedure_code=req.procedure_code,
            procedure_text=req.procedure_text,
            procedure_system="C4",
        )
        slot = Slot(req.slot_id, req.location_id, req.modality, req.start, req.duration_minutes)
        again = responder(name).parse_booking_request(
            requester(name).build_booking(order, slot, req.appointment_id).payload
        )
        assert replace(again, header=req.header) == req
    else:
        header = _header(data)
        result = requester(name).parse_booking_response(data, header.control_id)
        request = BookingRequest(header, "A1", "O1", "F1", "M1", "S1", "DTWN", "CT", _T0, 30)
        rebuilt = responder(name).build_booking_response(
            request,
            accepted=result.accepted,
            appointment_id=result.appointment_id,
            reason=result.reason,
            code=result.ack_code,
        )
        assert requester(name).parse_booking_response(rebuilt.payload, header.control_id) == result


@pytest.mark.parametrize("path", sorted((FIXTURES / "siu").glob("*.hl7")), ids=_id)
def test_siu_round_trip(path: Path) -> None:
    data = path.read_bytes()
    first = parse_siu(data, tz=TZ)
    assert first.start is not None and first.duration_minutes is not None
    name = "ch10-2.5.1" if first.version.startswith("2.5") else "qie-2.3"
    slot = Slot(
        first.filler_appointment_id, first.location_id, "CT", first.start, first.duration_minutes
    )
    appointment = Appointment(
        first.placer_appointment_id,
        first.placer_order_id,
        slot,
        Location(first.location_id, "", "", ()),
        procedure_code=first.service_code,
        filler_appointment_id=first.filler_appointment_id,
    )
    order = OrderRef(
        order_id=first.placer_order_id,
        mrn=first.mrn,
        filler_order_id=first.filler_order_id,
        name=PatientName("X", "Y"),
    )
    dialect = get_dialect(
        name, tz=TZ, local=Party(first.sending_application, first.sending_facility)
    )
    rebuilt = dialect.build_siu_s12(
        appointment, order, receiver=Party("EMR", "EMR"), trigger=first.trigger
    )
    assert_valid_hl7(rebuilt.payload)
    again = parse_siu(rebuilt.payload, tz=TZ)
    assert (
        replace(
            again,
            control_id=first.control_id,
            filler_status=first.filler_status,
            event_reason=first.event_reason,
        )
        == first
    )


@pytest.mark.parametrize("path", sorted((FIXTURES / "ack").glob("*.hl7")), ids=_id)
def test_ack_round_trip(path: Path) -> None:
    data = path.read_bytes()
    msg = parse(data)
    first = read_ack(msg)
    inbound = parse(
        f"MSH|^~\\&|{msg.receiving_application}|{msg.receiving_facility}|{msg.sending_application}|"
        f"{msg.sending_facility}|20250101||SIU^S12|{first.control_id}|P|{msg.version}\r".encode()
    )
    rebuilt = build_ack(inbound, first.code, text=first.text, error_code=first.error_code)
    assert_valid_hl7(rebuilt.payload)
    assert read_ack(parse(rebuilt.payload)) == first


# ---- negative samples ------------------------------------------------------------------------------------


def test_source_design_siu_is_rejected_by_validation() -> None:
    data = (FIXTURES / "negative/SIU_S12.source-design-wrong-fields.hl7").read_bytes()
    with pytest.raises(AssertionError, match="SCH"):
        assert_valid_hl7(data.replace(b"\n", b"\r"))
    # It still parses (relay mode must not crash), but the fields are visibly in the wrong places.
    siu = parse_siu(data)
    assert siu.placer_appointment_id == "1" and siu.filler_status == "" and siu.start is None


@pytest.mark.parametrize("name", ["garbage.hl7", "no-msh.hl7"])
def test_unreadable_fixtures_raise_parse_error(name: str) -> None:
    with pytest.raises(ParseError):
        parse((FIXTURES / "negative" / name).read_bytes())


def test_order_without_number_is_a_content_error() -> None:
    with pytest.raises(ParseError) as info:
        parse_order((FIXTURES / "negative/ORM_O01.no-order-number.2.3.hl7").read_bytes())
    assert info.value.hl7_error_code == "101"


def test_vxq_is_not_a_location_query() -> None:
    data = (FIXTURES / "negative/VXQ_V01.vaccination-query.2.3.hl7").read_bytes()
    with pytest.raises(ParseError, match="QRY"):
        responder("qie-2.3").parse_location_query(data)


_T0 = Slot("x", "x", "CT", __import__("datetime").datetime(2025, 1, 15, 7, tzinfo=TZ), 1).start
