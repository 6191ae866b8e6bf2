"""``radsched replay --batches whole|split`` on HL7 batch files, and reading a response batch."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from channels import AckCode, Party, build_ack, fixed_clock, parse
from channels.batch import build_batch_ack, parse_batch
from radsched.replay import _answer_code, _control_id, load

BATCH = (
    Path(__file__).resolve().parents[2] / "fixtures" / "interop" / "ORM_O01.batch-fhs-bhs.2.5.hl7"
)
ME = Party("RADSCHED", "RADSCHED")
CLOCK = fixed_clock(datetime(2025, 1, 14, 10, 15, 1, tzinfo=UTC))


def test_batch_file_whole_or_split() -> None:
    whole = load([BATCH])
    assert len(whole) == 1 and whole[0][1].startswith(b"FHS|")
    assert _control_id(whole[0][1]) == "BATCH0001"
    split = load([BATCH], batches="split")
    assert [_control_id(p) for _, p in split] == ["B0001", "B0002"]
    assert [label.rsplit("#", 1)[1] for label, _ in split] == ["1", "2"]


def test_response_batch_is_summarised_by_its_worst_code() -> None:
    batch = parse_batch(BATCH.read_bytes())
    first, second = (parse(m) for m in batch.messages)
    acks = [
        build_ack(first, AckCode.AA, sender=ME, clock=CLOCK).payload,
        build_ack(second, AckCode.AE, text="no phone", sender=ME, clock=CLOCK).payload,
    ]
    reply = build_batch_ack(batch, acks, sender=ME, clock=CLOCK)
    code, reason = _answer_code(reply, "BATCH0001")
    assert code == "AE" and reason == "response batch of 2 ACK(s): AA AE"
    assert _answer_code(build_batch_ack(batch, [], sender=ME, clock=CLOCK), "BATCH0001")[0] == "AA"
