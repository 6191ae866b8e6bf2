"""Our own fixture per real-world quirk and version (fixtures/interop/, issue 15): orders 2.1-2.8, batches,
refusals. Every ACK we build for them validates with hl7apy strict in the sender's version."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from channels import AckCode, Party, build_ack, build_nak, fixed_clock, parse, parse_order, read_ack
from channels.ack import header_refusal
from channels.batch import build_batch_ack, is_batch, messages_in, parse_batch
from channels.ids import sequential_control_ids
from tests.channels.hl7check import assert_valid_hl7
from tests.channels.samples import FIXTURES

INTEROP = FIXTURES / "interop"
ME = Party("RADSCHED", "RADSCHED")
CLOCK = fixed_clock(datetime(2025, 1, 14, 10, 15, 1, tzinfo=UTC))

# file -> (version, MSH-2, order id, modality, digits of the first phone or "", scheduled start or None)
ORDERS = {
    "ORM_O01.NW.2.1.hl7": ("2.1", "^~\\&", "PLC200021", "XR", "5555550121", "19940510090000"),
    "ORM_O01.NW.2.2-subcomponent-brace.hl7": (
        "2.2",
        "^~\\}",
        "PLC200022",
        "XR",
        "5555550122",
        None,
    ),
    "ORM_O01.NW.2.3.1-msh18-space-zseg.hl7": (
        "2.3.1",
        "^~\\&",
        "PLC200032",
        "XR",
        "5555550132",
        None,
    ),
    "OML_O21.NW.2.5.hl7": ("2.5", "^~\\&", "PLC200025", "XR", "15555550125", None),
    "ORM_O01.NW.2.6-bom-lf-ascii.hl7": ("2.6", "^~\\&", "PLC200026", "MR", "15555550126", None),
    "ORM_O01.NW.2.7-truncation-crlf.hl7": (
        "2.7",
        "^~\\&#",
        "PLC200027",
        "US",
        "",
        "20250116140000",
    ),
    "OMI_O23.NW.2.8-pid40.hl7": (
        "2.8",
        "^~\\&#",
        "PLC200028",
        "CT",
        "15555550128",
        "20250117093000",
    ),
}


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def test_every_interop_fixture_is_covered() -> None:
    names = {p.name for p in INTEROP.glob("*.hl7")}
    batches = {"ORM_O01.batch-fhs-bhs.2.5.hl7", "ORM_O01.batch-headerless-lf.2.3.hl7"}
    others = {
        "ORM_O01.empty-msh10-long-sender.2.3.1.hl7",
        "SIU_S12.relay.2.8.hl7",
    }  # test_siu_convert
    assert names == set(ORDERS) | batches | others


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_order_in_every_version(name: str) -> None:
    version, enc, order_id, modality, phone, start = ORDERS[name]
    data = (INTEROP / name).read_bytes()
    assert not is_batch(data)
    msg = parse(data)
    order = parse_order(msg)
    assert (order.version, order.order_id, order.modality) == (version, order_id, modality)
    assert _digits(order.phones[0].number) == phone if phone else not order.phones
    if start is None:
        assert order.scheduled_start is None
    else:
        assert order.scheduled_start is not None
        assert order.scheduled_start.strftime("%Y%m%d%H%M%S") == start
    for code, text in ((AckCode.AA, ""), (AckCode.AE, "no usable mobile number in PID-13")):
        ack = build_ack(msg, code, text=text, sender=ME, clock=CLOCK)
        assert ack.payload.startswith(b"MSH|" + enc.encode() + b"|")
        assert_valid_hl7(ack.payload)
        assert read_ack(parse(ack.payload)).control_id == msg.control_id


def test_empty_msh10_and_long_sender_get_a_valid_refusal() -> None:
    data = (INTEROP / "ORM_O01.empty-msh10-long-sender.2.3.1.hl7").read_bytes()
    refusal = header_refusal(parse(data))
    assert refusal == ("MSH-10 message control id is empty", "101")
    nak = build_nak(data, refusal[0], sender=ME, error_code=refusal[1], clock=CLOCK)
    assert_valid_hl7(nak.payload)
    back = parse(nak.payload)
    assert back.version == "2.3.1"
    assert back.receiving_application == "OpenRadiologyOrdersModule"[:20]
    assert read_ack(back).text.startswith("MSH-10 message control id is empty")


def _acks(payloads: tuple[bytes, ...]) -> list[bytes]:
    ids = sequential_control_ids("A")
    return [
        build_ack(parse(p), AckCode.CA, sender=ME, clock=CLOCK, control_ids=ids).payload
        for p in payloads
    ]


def test_fhs_bhs_batch_is_split_and_answered_with_a_batch_ack() -> None:
    batch = parse_batch((INTEROP / "ORM_O01.batch-fhs-bhs.2.5.hl7").read_bytes())
    assert [parse(m).control_id for m in batch.messages] == ["B0001", "B0002"]
    assert batch.control_id == "BATCH0001" and batch.declared_count == 2
    assert batch.file_header is not None and batch.file_header.control_id == "FILE0001"
    orders = [parse_order(m) for m in batch.messages]
    assert [o.order_control for o in orders] == ["NW", "CA"]
    acks = _acks(batch.messages)
    answer = build_batch_ack(
        batch, acks, sender=ME, clock=CLOCK, control_ids=sequential_control_ids("B")
    )
    lines = answer.split(b"\r")
    assert (
        lines[0] == b"FHS|^~\\&|RADSCHED|RADSCHED|RIS|RADCO|20250114101501+0000||||B000001|FILE0001"
    )
    assert (
        lines[1]
        == b"BHS|^~\\&|RADSCHED|RADSCHED|RIS|RADCO|20250114101501+0000||||B000002|BATCH0001"
    )
    assert lines[-3:] == [b"BTS|2", b"FTS|1", b""]
    inner = parse_batch(answer)
    assert [read_ack(parse(m)).control_id for m in inner.messages] == ["B0001", "B0002"]
    for ack in inner.messages:
        assert_valid_hl7(ack)


def test_headerless_batch_of_lf_messages() -> None:
    data = (INTEROP / "ORM_O01.batch-headerless-lf.2.3.hl7").read_bytes()
    assert not is_batch(data)  # the listener refuses it (one message per frame); files split it
    assert [parse(m).control_id for m in messages_in(data)] == ["H0001", "H0002"]
    batch = parse_batch(data)
    assert batch.file_header is None and batch.batch_header is None and batch.control_id == ""
    assert [parse(m).control_id for m in batch.messages] == ["H0001", "H0002"]
    answer = build_batch_ack(batch, _acks(batch.messages)[:1], sender=ME, clock=CLOCK)
    assert answer.startswith(b"BHS|^~\\&|RADSCHED|RADSCHED|||") and answer.endswith(b"BTS|1\r")


def test_batch_without_messages_is_refused() -> None:
    from channels import ParseError

    with pytest.raises(ParseError, match="no message"):
        parse_batch(b"BHS|^~\\&|A|B\rBTS|0\r")
    with pytest.raises(ParseError, match="outside any message"):
        parse_batch(b"BHS|^~\\&|A|B\rPID|1\rBTS|0\r")


def test_single_message_is_not_a_batch(tmp_path: Path) -> None:
    assert not is_batch((FIXTURES / "orders" / "ORM_O01.NW.2.3.hl7").read_bytes())
    del tmp_path
