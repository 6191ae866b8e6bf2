"""ACK rules (reference/hl7.md section 2): header swap, MSH-9 per version, ERR per version, enhanced mode, NAK."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels import (
    AckCode,
    ControlIdMismatch,
    ParseError,
    Party,
    build_ack,
    build_nak,
    fixed_clock,
    parse,
    parse_ack,
    read_ack,
    sequential_control_ids,
    wants_accept_ack,
    wants_application_ack,
)
from channels.ack import header_refusal
from tests.channels.hl7check import assert_valid_hl7

CLOCK = fixed_clock(datetime(2025, 1, 14, 10, 15, 1, tzinfo=UTC))


def _inbound(version: str, *, msh15: str = "", msh16: str = "", msh9: str = "SIU^S12") -> bytes:
    return (
        f"MSH|^~\\&|SYNAPSERIS|RADCO|RADSCHED|RADSCHED|20250114101500||{msh9}|RIS000777|T|{version}"
        f"|||{msh15}|{msh16}\rPID|1||MRN1\r"
    ).encode()


@pytest.mark.parametrize(
    ("version", "msh9"),
    [
        ("2.3", b"ACK^S12"),
        ("2.3.1", b"ACK^S12"),
        ("2.4", b"ACK^S12^ACK"),
        ("2.5", b"ACK^S12^ACK"),
        ("2.5.1", b"ACK^S12^ACK"),
    ],
)
def test_ack_header(version: str, msh9: bytes) -> None:
    ack = build_ack(
        parse(_inbound(version)), AckCode.AA, clock=CLOCK, control_ids=sequential_control_ids("A")
    )
    assert ack.control_id == "A000001"
    assert ack.payload == (
        b"MSH|^~\\&|RADSCHED|RADSCHED|SYNAPSERIS|RADCO|20250114101501+0000||"
        + msh9
        + b"|A000001|T|"
        + version.encode()
        + b"\rMSA|AA|RIS000777\r"
    )
    assert_valid_hl7(ack.payload)


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4"])
def test_err_in_23_form(version: str) -> None:
    ack = build_ack(
        parse(_inbound(version)),
        AckCode.AE,
        text="Department not mapped",
        error_code="103",
        error_location="AIL-3",
    )
    assert b"\rERR|AIL^1^3^103&Table value not found&HL70357\r" in ack.payload
    assert_valid_hl7(ack.payload)
    parsed = read_ack(parse(ack.payload))
    assert (parsed.code, parsed.text, parsed.error_code) == (
        AckCode.AE,
        "Department not mapped",
        "103",
    )


@pytest.mark.parametrize("version", ["2.5", "2.5.1"])
def test_err_in_25_form(version: str) -> None:
    ack = build_ack(
        parse(_inbound(version)),
        AckCode.AR,
        text="Version not accepted",
        error_code="203",
        error_location="MSH-12",
    )
    assert (
        b"\rERR||MSH^1^12|203^Unsupported version id^HL70357|E||||Version not accepted\r"
        in ack.payload
    )
    assert_valid_hl7(ack.payload)
    assert read_ack(parse(ack.payload)).error_code == "203"


def test_error_without_code_defaults_to_internal_error() -> None:
    ack = build_ack(parse(_inbound("2.5.1")), AckCode.AR, text="database unavailable")
    assert b"207^Application internal error^HL70357" in ack.payload


def test_msa_text_is_one_line_and_bounded() -> None:
    ack = build_ack(parse(_inbound("2.3")), AckCode.AE, text="line one\r\nline | two " + "x" * 200)
    msa = parse(ack.payload).require("MSA")
    assert "\n" not in msa.get(3) and len(msa.get(3)) == 80
    assert msa.get(3).startswith("line one line | two")


@pytest.mark.parametrize("code", list(AckCode))
def test_all_codes_and_enhanced_mode(code: AckCode) -> None:
    inbound = parse(_inbound("2.5.1", msh15="AL", msh16="NE"))
    ack = build_ack(inbound, code)
    assert_valid_hl7(ack.payload)
    assert parse_ack(ack.payload, "RIS000777").code is code


@pytest.mark.parametrize(
    ("msh15", "msh16", "accept_ok", "accept_err", "app_ok", "app_err"),
    [
        ("", "", False, False, True, True),  # original mode
        ("NE", "NE", False, False, False, False),
        ("AL", "NE", True, True, False, False),
        ("ER", "AL", False, True, True, True),
        ("SU", "ER", True, False, False, True),
    ],
)
def test_enhanced_mode_decisions(
    msh15: str, msh16: str, accept_ok: bool, accept_err: bool, app_ok: bool, app_err: bool
) -> None:
    msg = parse(_inbound("2.5.1", msh15=msh15, msh16=msh16))
    assert wants_accept_ack(msg, success=True) is accept_ok
    assert wants_accept_ack(msg, success=False) is accept_err
    assert wants_application_ack(msg, success=True) is app_ok
    assert wants_application_ack(msg, success=False) is app_err


def test_parse_ack_checks_control_id() -> None:
    ack = build_ack(parse(_inbound("2.3")), AckCode.AA)
    with pytest.raises(ControlIdMismatch) as info:
        parse_ack(ack.payload, "SIU000000001")
    assert (info.value.expected, info.value.received) == ("SIU000000001", "RIS000777")


def test_bare_ack_msh9_and_bad_msa() -> None:
    assert (
        parse_ack(b"MSH|^~\\&|A|B|C|D|20250101||ACK|X|P|2.3\rMSA|AA|C1\r", "C1").code is AckCode.AA
    )
    with pytest.raises(ParseError, match="MSA-1"):
        parse_ack(b"MSH|^~\\&|A|B|C|D|20250101||ACK|X|P|2.3\rMSA|OK|C1\r", "C1")
    with pytest.raises(ParseError, match="MSA"):
        parse_ack(b"MSH|^~\\&|A|B|C|D|20250101||ACK|X|P|2.3\r", "C1")


def test_nak_salvages_what_it_can() -> None:
    broken = (
        b"MSH|^~\\&|SYNAPSERIS|RADCO|||20250101||ORM^O01|RIS42|P|2.4\rPID|1\r\xff\xfeBAD SEGMENT\r"
    )
    with pytest.raises(ParseError) as info:
        parse(broken)
    nak = build_nak(broken, info.value.reason, sender=Party("RADSCHED", "RADSCHED"), clock=CLOCK)
    assert_valid_hl7(nak.payload)
    msg = parse(nak.payload)
    assert (msg.receiving_application, msg.receiving_facility, msg.version) == (
        "SYNAPSERIS",
        "RADCO",
        "2.4",
    )
    ack = read_ack(msg)
    assert (ack.code, ack.control_id) == (AckCode.AR, "RIS42")
    assert "segment" in ack.text


def test_nak_for_garbage() -> None:
    nak = build_nak(
        b"\x00\x01hello", "message does not start with an MSH segment", sender=Party("R", "R")
    )
    assert_valid_hl7(nak.payload)
    ack = read_ack(parse(nak.payload))
    assert ack.code is AckCode.AR and ack.control_id == "UNKNOWN" and "MSH" in ack.text


@pytest.mark.parametrize(
    ("msh9", "msh11", "expected"),
    [
        ("ORM^~", "P", b"|ACK|A000001|P|"),  # a raw repetition separator as the trigger
        ("ORM^&", "P", b"|ACK|A000001|P|"),  # a raw subcomponent separator as the trigger
        ("ORM^O01", "^", b"|ACK^O01|A000001|P|"),  # MSH-11 only a component separator
        ("ORM^O01", "X~Y", b"|ACK^O01|A000001|P|"),  # not a table 0103 value
        ("ORM^O01", "T^I", b"|ACK^O01|A000001|T^I|"),  # processing id with its mode: kept
    ],
)
def test_ack_echoes_no_stray_delimiters(msh9: str, msh11: str, expected: bytes) -> None:
    # Found by the inbound fuzzer: echoing MSH-9.2 or MSH-11 verbatim gave an ACK strict parsers refuse.
    raw = f"MSH|^~\\&|RIS|RADCO|RADSCHED|RADSCHED|20250114101500||{msh9}|C1|{msh11}|2.3\r".encode()
    ack = build_ack(parse(raw), AckCode.AR, clock=CLOCK, control_ids=sequential_control_ids("A"))
    assert expected in ack.payload
    assert_valid_hl7(ack.payload)


@pytest.mark.parametrize("msh10", [" ", "A^B", "A~B", "A&B"])
def test_an_unrepeatable_control_id_is_a_header_refusal(msh10: str) -> None:
    raw = f"MSH|^~\\&|RIS|RADCO|RADSCHED|RADSCHED|20250114101500||ORM^O01|{msh10}|P|2.3\r".encode()
    refusal = header_refusal(parse(raw))
    assert refusal is not None and "MSH-10" in refusal[0]
    nak = build_nak(raw, refusal[0], sender=Party("RADSCHED", "RADSCHED"), clock=CLOCK)
    assert_valid_hl7(nak.payload)
