"""``channels.sniff`` reads the same header fields as the full parser, from raw bytes, for any
delimiters and segment terminators, and never raises on broken input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels import AckCode, build_ack, parse, read_ack, sniff

# Control ids as senders write them: no delimiters, no escape sequences.
_IDS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_", min_size=1, max_size=40)
_SEPARATORS = st.sampled_from(["|^~\\&", "#^~\\&", "|@~\\&", "!$%\\*"])


def _message(enc: str, control_id: str, trigger: str, terminator: str) -> bytes:
    fs, comp = enc[0], enc[1]
    msh = fs.join(
        ["MSH", enc[1:], "RIS", "HOSP", "RADSCHED", "RADSCHED", "20261204101500", "",
         f"SIU{comp}{trigger}", control_id, "P", "2.5.1"]
    )  # fmt: skip
    return (msh + terminator + fs.join(["SCH", "A1"]) + terminator).encode("ascii")


@given(
    enc=_SEPARATORS,
    control_id=_IDS,
    trigger=st.sampled_from(["S12", "S13", "S15"]),
    terminator=st.sampled_from(["\r", "\n", "\r\n"]),
)
def test_header_fields_match_the_parser(
    enc: str, control_id: str, trigger: str, terminator: str
) -> None:
    payload = _message(enc, control_id, trigger, terminator)
    parsed = parse(payload)
    assert sniff.control_id(payload).decode() == parsed.control_id == control_id
    assert sniff.message_type(payload) == f"SIU^{trigger}"


@given(
    enc=_SEPARATORS,
    control_id=_IDS,
    code=st.sampled_from([AckCode.AA, AckCode.AE, AckCode.AR]),
)
def test_msa_of_our_acks_matches_read_ack(enc: str, control_id: str, code: AckCode) -> None:
    request = _message(enc, control_id, "S12", "\r")
    ack = build_ack(parse(request), code, text="slot gone" if code != AckCode.AA else "")
    read = read_ack(parse(ack.payload))
    found = sniff.msa(ack.payload)
    assert found is not None
    assert (found[0].decode(), found[1].decode()) == (read.code.value, read.control_id)
    assert sniff.acknowledges(request, ack.payload)
    other = _message(enc, control_id + "X", "S12", "\r")
    assert not sniff.acknowledges(other, ack.payload)


@given(st.binary(max_size=300))
def test_broken_input_never_raises(data: bytes) -> None:
    sniff.control_id(data)
    sniff.message_type(data)
    sniff.msa(data)
    sniff.acknowledges(data, data)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"MSH|^~\\&|RIS|R|A|B|20260101||ACK|R1|P|2.3\rQAK|1|OK\r", None),
        (b"MSH|^~\\&|RIS|R|A|B|20260101||ACK|R1|P|2.3\rMSA|AA\r", (b"AA", b"")),
        (b"NOT HL7\rMSA|AA|C1\r", None),
    ],
)
def test_msa_edges(reply: bytes, expected: tuple[bytes, bytes] | None) -> None:
    assert sniff.msa(reply) == expected


def test_an_empty_control_id_acknowledges_nothing() -> None:
    request = b"MSH|^~\\&|A|B|C|D|20260101||SIU^S12||P|2.5.1\r"
    reply = b"MSH|^~\\&|C|D|A|B|20260101||ACK|X1|P|2.5.1\rMSA|AA|\r"
    assert not sniff.acknowledges(request, reply)
