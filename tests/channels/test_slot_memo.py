"""Slot answers that repeat are read once (channels/dialects/slotmemo.py): the same body gives the same
slots, a changed body is read afresh, and the header is checked on every answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels import ControlIdMismatch, ResponseError, Slot
from channels.dialects.base import Dialect
from channels.dialects.slotmemo import SlotMemo, split_body
from tests.channels.samples import DIALECT_NAMES, SLOTS, WINDOW, requester, responder

FIRST_BODY_SEGMENT = {"ch10-2.5.1": b"SCH", "qie-2.3": b"DSP"}


def _exchange(name: str) -> tuple[Dialect, Callable[[list[Slot]], tuple[bytes, str]]]:
    """A requester, and a function that makes it query and the RIS answer with the given slots."""
    us, ris = requester(name), responder(name)

    def ask(slots: list[Slot]) -> tuple[bytes, str]:
        query = us.build_slot_query("DTWN", "CT", *WINDOW)
        answer = ris.build_slot_response(ris.parse_slot_query(query.payload), slots)
        return answer.payload, query.control_id

    return us, ask


def test_a_repeated_answer_gives_the_same_slots_without_reading_them_again(
    dialect_name: str,
) -> None:
    us, ask = _exchange(dialect_name)
    first, first_id = ask(SLOTS)
    second, second_id = ask(SLOTS)
    assert first != second  # new control ids and timestamps in the header...
    assert us.parse_slot_response(first, first_id) == SLOTS
    assert us.parse_slot_response(second, second_id) == SLOTS  # ...the same body
    assert (us.slot_memo.misses, us.slot_memo.hits) == (1, 1)


def test_an_answer_whose_slots_changed_is_read_afresh(dialect_name: str) -> None:
    us, ask = _exchange(dialect_name)
    payload, cid = ask(SLOTS)
    assert us.parse_slot_response(payload, cid) == SLOTS
    moved = [SLOTS[0], replace(SLOTS[1], start=SLOTS[1].start + timedelta(minutes=15))]
    payload, cid = ask(moved)
    assert us.parse_slot_response(payload, cid) == moved
    payload, cid = ask(SLOTS[:1])  # one booked in the meantime
    assert us.parse_slot_response(payload, cid) == SLOTS[:1]
    assert us.slot_memo.hits == 0


def test_the_header_is_checked_on_every_answer_even_when_the_body_is_known(
    dialect_name: str,
) -> None:
    us, ask = _exchange(dialect_name)
    payload, cid = ask(SLOTS)
    assert us.parse_slot_response(payload, cid) == SLOTS
    payload, cid = ask(SLOTS)
    with pytest.raises(ControlIdMismatch):
        us.parse_slot_response(payload, "NOT-OURS")
    rejected = payload.replace(b"MSA|AA|", b"MSA|AE|", 1)
    assert rejected != payload
    with pytest.raises(ResponseError):
        us.parse_slot_response(rejected, cid)


def test_an_answer_with_an_err_after_its_slots_or_non_ascii_text_is_read_whole_every_time() -> None:
    for name, first in FIRST_BODY_SEGMENT.items():
        payload, _ = _exchange(name)[1](SLOTS)
        start = split_body(payload, first)
        assert start > 0 and payload[start:].startswith(b"\r" + first + b"|")
        assert split_body(payload.replace(b"DTWN", "DTWÑ".encode(), 1), first) == -1
        assert split_body(payload.replace(b"\r", b"\n"), first) == -1

    for name in DIALECT_NAMES:
        us, ask = _exchange(name)
        without = requester(name)
        without.slot_memo = SlotMemo(size=0)
        for _ in range(2):
            payload, cid = ask(SLOTS)
            odd = payload + b"ERR|||207^Application internal error^HL70357|W\r"
            assert us.parse_slot_response(odd, cid) == without.parse_slot_response(odd, cid)
        assert us.slot_memo.hits == 0  # an answer with header segments after its slots is not kept


_ids = st.text(alphabet="ABCXYZ0129-^&~\\ ", min_size=1, max_size=12).map(str.strip).filter(bool)
_slots = st.lists(
    st.builds(
        lambda sid, minutes, duration: Slot(
            sid, "DTWN", "CT", WINDOW[0] + timedelta(minutes=minutes), duration
        ),
        _ids,
        st.integers(0, 2 * 24 * 60),
        st.integers(5, 240),
    ),
    max_size=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(DIALECT_NAMES), slots=_slots, again=_slots)
def test_the_memo_never_changes_what_an_answer_reads_as(
    name: str, slots: list[Slot], again: list[Slot]
) -> None:
    us, ask = _exchange(name)
    without = requester(name)
    without.slot_memo = SlotMemo(size=0)  # keeps nothing: every answer is read in full
    for batch in (slots, again, slots, again):
        payload, cid = ask(batch)
        assert us.parse_slot_response(payload, cid) == without.parse_slot_response(payload, cid)
    assert without.slot_memo.hits == 0
