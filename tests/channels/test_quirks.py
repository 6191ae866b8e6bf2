"""reference/hl7.md 7.9: the vendor-quirk ORM normalises as that section expects, plus the further variants."""

from __future__ import annotations

from datetime import datetime

import pytest

from channels import (
    AckCode,
    Party,
    build_ack,
    get_dialect,
    parse,
    parse_ack,
    parse_order,
    sequential_control_ids,
)
from tests.channels.hl7check import assert_valid_hl7
from tests.channels.samples import FIXTURES, TZ

QUIRK_ORM = (
    b"MSH|^~\\&|SYNAPSERIS|RADCO|SMSSCHED|SMSVENDOR|20250114101500.123-0600||ORM^O01^ORM_O01|RIS000126|P|2.3.1|||||||\n"
    b"PID|1||MRN00003^^^RADCO^MR~999001234^^^SSA^SS~E765432^^^EPIC&2.16.840.1.113883.19.5&ISO^PI||"
    b"TESTPATIENT^CHARLIE^^^^||19650707|M|||||(555)555-0102^PRN^PH~(555)555-0103^ORN^CP||||||||||||||||\n"
    b"PV1|1|O||||||||||||||||||||||||||||||||||||||||||||||\n"
    b"ORC|XO|PLC100047^EMR|ACC00012347^SYNAPSERIS||SC||^^^20250117093000^^R|||||||||\n"
    b"OBR|1|PLC100047^EMR|ACC00012347^SYNAPSERIS|US123^US ABDOMEN COMPLETE^L|||||||||RUQ pain \\T\\ nausea|||"
    b"||ACC00012347|RP003|SPS003||||US|||^^^20250117093000^^R\n"
    b"NTE|1|L|SMS reply: Yes \\T\\ thanks \\S\\_\\S\\\\.br\\Prefers mornings \\E\\ no calls\n"
    b"ZRS|SMS_OPT_IN|Y|20250110\n"
)


def test_fixture_is_the_reference_sample() -> None:
    assert (FIXTURES / "orders/ORM_O01.XO-quirks-lf-2.3.1.hl7").read_bytes() == QUIRK_ORM


def test_quirk_orm_normalises_as_documented() -> None:
    msg = parse(QUIRK_ORM)
    assert [s.name for s in msg.segments] == ["MSH", "PID", "PV1", "ORC", "OBR", "NTE", "ZRS"]
    pid = msg.require("PID")
    assert pid.repetition_count(3) == 3
    assert pid.subcomponents(3, 4, repetition=3) == ["EPIC", "2.16.840.1.113883.19.5", "ISO"]
    assert pid.get(13, 3, repetition=2) == "CP"
    assert msg.require("OBR").get(13) == "RUQ pain & nausea"
    note = msg.require("NTE").get(3)
    assert "&" in note and "^_^" in note and "\\" in note and "\n" in note
    order = parse_order(QUIRK_ORM, tz=TZ)
    assert order.modality == "US"
    assert order.order_control == "XO"
    assert order.scheduled_start == datetime(
        2025, 1, 17, 9, 30, tzinfo=TZ
    )  # ORC-7.4, site wall time
    assert order.z_segments == ("ZRS|SMS_OPT_IN|Y|20250110",)
    assert order.mrn == "MRN00003"
    mobile = [p for p in order.phones if p.is_mobile]
    assert [p.number for p in mobile] == ["(555)555-0103"] and mobile[0].use == "ORN"
    ack = build_ack(msg, AckCode.AA, control_ids=sequential_control_ids("A"))
    assert parse_ack(ack.payload, "RIS000126").code is AckCode.AA
    # Answered in the sender's version (2.3.1: two-component MSH-9) and delimiters.
    assert b"|ACK^O01|A000001|P|2.3.1\r" in ack.payload
    assert_valid_hl7(ack.payload)


@pytest.mark.parametrize(
    "variant",
    [
        QUIRK_ORM.replace(b"\n", b"\r\n"),  # CRLF separators
        QUIRK_ORM.replace(b"\n", b"\r").rstrip(b"\r"),  # final segment without CR
        b"\n\r\x00"
        + QUIRK_ORM.replace(b"\n", b"\r")
        + b"\r\n\x00 ",  # stray bytes around the message
        b"\xef\xbb\xbf" + QUIRK_ORM,  # UTF-8 BOM
    ],
)
def test_separator_variants(variant: bytes) -> None:
    assert parse_order(variant, tz=TZ) == parse_order(QUIRK_ORM, tz=TZ)


def test_lone_lf_inside_cr_message_is_data() -> None:
    data = QUIRK_ORM.replace(b"\n", b"\r").replace(b"SMS reply: Yes", b"SMS reply:\nYes")
    msg = parse(data)
    assert len(msg.segments) == 7
    assert msg.require("NTE").get(3).startswith("SMS reply:\nYes")


def test_empty_msh18_with_cp1252_byte_is_read_tolerantly() -> None:
    data = (FIXTURES / "orders/ORM_O01.NW.2.3-cp1252-crlf.hl7").read_bytes()
    msg = parse(data)
    assert msg.codec == "cp1252" and msg.decode_replaced
    assert parse_order(data).name.given == "ANDRÉ"
    assert msg.first("EVN") is not None  # unexpected segment kept, not rejected


def test_declared_latin1_and_utf8() -> None:
    latin = parse_order((FIXTURES / "orders/ORM_O01.NW.2.3-8859-1.hl7").read_bytes())
    assert latin.name.given == "RENÉE"
    utf8 = parse_order((FIXTURES / "orders/ORM_O01.NW.2.5.1-utf8-xtn25.hl7").read_bytes())
    assert (utf8.name.family, utf8.name.middle) == ("TESTPATIENT-MÜLLER", "JOSÉ")


def test_xtn_forms() -> None:
    v23 = parse_order((FIXTURES / "orders/ORM_O01.NW.2.3.hl7").read_bytes())
    assert [(p.source, p.use, p.equipment, p.number) for p in v23.phones] == [
        ("PID-13", "PRN", "CP", "(217)555-0123"),
        ("PID-13", "PRN", "PH", "(217)555-0145"),
        ("PID-14", "WPN", "PH", "(217)555-0199"),
    ]
    v25 = parse_order((FIXTURES / "orders/ORM_O01.NW.2.5.1-utf8-xtn25.hl7").read_bytes())
    mobile, email, work = v25.phones
    assert (mobile.equipment, mobile.country, mobile.area, mobile.local, mobile.number) == (
        "CP",
        "1",
        "217",
        "5550177",
        "+12175550177",
    )
    assert email.email == "bravo.test@example.org" and email.number == ""
    assert (work.source, work.extension) == ("PID-14", "12")


def test_custom_delimiters_and_filler_only_order() -> None:
    data = (FIXTURES / "orders/ORM_O01.NW.2.4-custom-delimiters.hl7").read_bytes()
    order = parse_order(data)
    assert order.placer_order_id == "" and order.order_id == order.filler_order_id == "ACC00012350"
    msg = parse(data)
    assert msg.require("OBR").get(13) == "Pain # numbness $ @ * ! end"
    ack = build_ack(msg, AckCode.AA)
    assert ack.payload.startswith(b"MSH#$*!@#")  # ACK in the sender's delimiters
    assert parse_ack(ack.payload, "RIS000129").code is AckCode.AA


def test_facility_placement_override() -> None:
    data = (FIXTURES / "orders/ORM_O01.NW.2.3.hl7").read_bytes()
    assert get_dialect("qie-2.3").parse_order(data).facility == "RADCO"
    assert (
        get_dialect("qie-2.3", {"order.facility": "PV1-3.4"}).parse_order(data).facility == "DTWN"
    )


def test_cancel_order() -> None:
    order = parse_order((FIXTURES / "orders/ORM_O01.CA-cancel.2.3.hl7").read_bytes())
    assert order.is_cancel and order.order_id == "PLC100045"


def test_ack_for_order_from_party() -> None:
    msg = parse(QUIRK_ORM)
    ack = build_ack(msg, "AA", sender=Party("RADSCHED", "RADSCHED"))
    assert ack.payload.startswith(b"MSH|^~\\&|RADSCHED|RADSCHED|SYNAPSERIS|RADCO|")
