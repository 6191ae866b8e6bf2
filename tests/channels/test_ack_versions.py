"""ACKs valid in the sender's version, 2.1-2.8 (issue 15 items 2 and 4), checked by hl7apy strict.

Property tests build an inbound header from random versions, delimiters, parties and control ids and check
that every ACK and NAK validates in that version, echoes MSA-2, and keeps the sender's delimiters.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels import AckCode, Party, build_ack, build_nak, fixed_clock, parse, read_ack
from channels.ack import header_refusal
from channels.escaping import Delimiters, escape
from channels.versions import KNOWN_VERSIONS
from tests.channels.hl7check import assert_valid_hl7

CLOCK = fixed_clock(datetime(2025, 1, 14, 10, 15, 1, tzinfo=UTC))
ME = Party("RADSCHED", "RADSCHED")
# Table 0104 from 2.1 to 2.8.2 (hl7check validates 2.7.1 with hl7apy's 2.7 tables).
VERSIONS = list(KNOWN_VERSIONS)
PUNCT = "|^~\\&$*!@?]/%"


def _inbound(
    version: str, *, enc: str = "^~\\&", fs: str = "|", cid: str = "C1", app: str = "SND"
) -> bytes:
    return (
        f"MSH{fs}{enc}{fs}{app}{fs}SF{fs}RCV{fs}RF{fs}20250114101500{fs}{fs}ORM^O01{fs}{cid}{fs}P{fs}{version}\r"
        f"PID{fs}1{fs}{fs}X\r"
    ).encode()


def _fields(payload: bytes) -> list[list[str]]:
    fs = chr(payload[3])
    return [line.split(fs) for line in payload.decode("latin-1").split("\r") if line]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("code", list(AckCode))
def test_every_code_validates_in_every_version(version: str, code: AckCode) -> None:
    enc = "^~\\&#" if version >= "2.7" else "^~\\&"
    ack = build_ack(parse(_inbound(version, enc=enc)), code, text="why it failed", clock=CLOCK)
    assert_valid_hl7(ack.payload)
    msh, msa, *_rest = _fields(ack.payload)
    assert msh[1] == enc and msh[11] == version and msa[:3] == ["MSA", code.value, "C1"]
    parsed = read_ack(parse(ack.payload))
    assert parsed.text == "why it failed"


@pytest.mark.parametrize("version", ["2.7", "2.8"])
def test_no_msa3_from_27_text_in_err8(version: str) -> None:
    ack = build_ack(
        parse(_inbound(version, enc="^~\\&#")), AckCode.AE, text="no phone", error_code="101"
    )
    _msh, msa, err = _fields(ack.payload)
    assert len(msa) == 3
    assert err[3].startswith("101^") and err[4] == "E" and err[8] == "no phone"
    # An AA with a note still carries the text (ERR severity I) since MSA-3 is gone.
    aa = build_ack(parse(_inbound(version, enc="^~\\&#")), AckCode.AA, text="not acted on")
    assert _fields(aa.payload)[2][4] == "I"
    assert_valid_hl7(aa.payload)


def test_21_has_no_err_and_a_precision_timestamp() -> None:
    ack = build_ack(parse(_inbound("2.1")), AckCode.AR, error_code="200", clock=CLOCK)
    msh, msa = _fields(ack.payload)
    assert msh[6] == "20250114101501+0000^S" and msa[3] == "Unsupported message type"
    assert_valid_hl7(ack.payload)


def test_custom_delimiters_are_kept() -> None:
    ack = build_ack(parse(_inbound("2.1", enc="^~\\}")), AckCode.AE, text="a}b^c", clock=CLOCK)
    assert ack.payload.startswith(b"MSH|^~\\}|")
    assert read_ack(parse(ack.payload)).text == "a}b^c"


def test_truncation_character_in_text_is_escaped() -> None:
    ack = build_ack(parse(_inbound("2.7", enc="^~\\&#")), AckCode.AE, text="bed #4")
    assert b"bed \\P\\4" in ack.payload
    assert_valid_hl7(ack.payload)


@pytest.mark.parametrize("version", ["2.3", "2.5.1", "2.8"])
def test_overlong_sender_is_cut_with_a_reason(version: str) -> None:
    enc = "^~\\&#" if version >= "2.8" else "^~\\&"
    ack = build_ack(parse(_inbound(version, enc=enc, app="A" * 30)), AckCode.AA)
    assert_valid_hl7(ack.payload)
    msh = _fields(ack.payload)[0]
    assert len(msh[4]) == 20
    assert msh[4].endswith("#") == (version >= "2.7")
    assert "MSH-3 longer than 20 characters" in read_ack(parse(ack.payload)).text


def test_long_control_ids_are_echoed_exactly() -> None:
    cid = "MSGID_e30a3471-7afd-4aa2-a3d5-e93fd89d24b3"
    ack = build_ack(parse(_inbound("2.3", cid=cid)), AckCode.AA)
    assert read_ack(parse(ack.payload)).control_id == cid
    assert_valid_hl7(ack.payload)


def test_header_refusals() -> None:
    assert header_refusal(parse(_inbound("2.3", cid=""))) == (
        "MSH-10 message control id is empty",
        "101",
    )
    assert header_refusal(parse(_inbound("2.3", cid="X" * 200)))[1] == "102"  # type: ignore[index]
    assert header_refusal(parse(_inbound("2.9")))[1] == "203"  # type: ignore[index]
    assert header_refusal(parse(_inbound("2.4 "))) is None
    assert header_refusal(parse(_inbound("2.3", cid="A\x00B"))) == (
        "MSH-10 holds control characters",
        "102",
    )
    assert header_refusal(parse(_inbound("2.3", app="A\x00"))) == (
        "MSH-3/MSH-4 hold a NUL character",
        "102",
    )


@pytest.mark.parametrize("version", ["2.1", "2.2", "2.7", "2.8"])
def test_nak_answers_in_the_senders_version_and_delimiters(version: str) -> None:
    enc = "^~\\&#" if version >= "2.7" else "^~\\}"
    data = _inbound(version, enc=enc, cid="", app="OpenMRSRadiologyModule")
    nak = build_nak(
        data, "MSH-10 message control id is empty", sender=ME, error_code="101", clock=CLOCK
    )
    assert_valid_hl7(nak.payload)
    msh, msa, *_ = _fields(nak.payload)
    assert msh[1] == enc and msh[11] == version and msa[2] == "UNKNOWN"
    assert len(msh[4]) <= (20 if version >= "2.3" else 199)
    assert read_ack(parse(nak.payload)).text.startswith("MSH-10 message control id is empty")


def test_nak_for_broken_msh2_uses_standard_delimiters() -> None:
    data = b"MSH|^\\~\\&|IRIS|X|R|F|20250101||ORM^O01|ID1|P|2.4 \rPID|1\r"
    nak = build_nak(data, "MSH-2 encoding characters are not distinct", sender=ME)
    assert nak.payload.startswith(b"MSH|^~\\&|")
    assert _fields(nak.payload)[1][2] == "ID1"
    assert_valid_hl7(nak.payload)


def _delimiters() -> st.SearchStrategy[Delimiters]:
    return st.permutations(PUNCT).map(lambda p: Delimiters(*p[:5]))


_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)


@settings(max_examples=150, deadline=None)
@given(
    version=st.sampled_from(VERSIONS),
    delims=_delimiters(),
    truncation=st.booleans(),
    code=st.sampled_from(list(AckCode)),
    cid=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60),
    app=st.text(st.characters(min_codepoint=0x41, max_codepoint=0x5A), max_size=40),
    text=_TEXT,
    error_code=st.sampled_from(["", "100", "101", "103", "200", "203", "207"]),
)
def test_property_ack_validates_in_its_version(
    version: str,
    delims: Delimiters,
    truncation: bool,
    code: AckCode,
    cid: str,
    app: str,
    text: str,
    error_code: str,
) -> None:
    used = set(delims.field + delims.encoding_characters)
    trunc = next((c for c in "#%?" if c not in used), "") if truncation and version >= "2.7" else ""
    enc = delims.encoding_characters + trunc
    fs = delims.field
    raw = (
        f"MSH{fs}{enc}{fs}{escape(app, delims)}{fs}SF{fs}RCV{fs}RF{fs}20250114101500{fs}{fs}"
        f"ORM{delims.component}O01{fs}{escape(cid, delims)}{fs}P{fs}{version}\rPID{fs}1\r"
    ).encode()
    inbound = parse(raw)
    ack = build_ack(inbound, code, text=text, error_code=error_code, sender=ME)
    assert_valid_hl7(ack.payload)
    back = parse(ack.payload)
    assert back.delimiters == delims and back.encoding_characters == (
        enc if version >= "2.7" else delims.encoding_characters
    )
    assert back.version == version
    parsed = read_ack(back)
    assert parsed.code is code
    assert parsed.control_id == cid
    line = " ".join(text.split())
    if line and (not trunc or trunc not in line):
        assert parsed.text.startswith(line[:40])


def test_batch_refused_whole_names_its_first_message() -> None:
    from channels import ParseError

    data = (
        b"BHS|^~\\&|S|F|R|RF|20250101||||B1\rMSH|^~\\&|S|F|R|RF|20250101||ADT^A04|M1|P|2.5\rBTS|1\r"
    )
    with pytest.raises(ParseError, match="HL7 batch"):
        parse(data)
    nak = build_nak(data, "an HL7 batch (FHS/BHS) where one message was expected", sender=ME)
    msh, msa, *_ = _fields(nak.payload)
    assert msh[11] == "2.5" and msa[2] == "M1"
    assert_valid_hl7(nak.payload)
