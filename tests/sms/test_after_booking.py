"""The pure rules of replies after a booking and of staff's answers (radsched.conversation.after_booking)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from radsched.conversation.after_booking import (
    Booked,
    Reply,
    decision_commands,
    reply_commands,
    reply_of,
)
from radsched.conversation.config import ConversationConfig
from radsched.conversation.gsm import segment_info
from radsched.conversation.model import Audit, ConsentStatus, SendText

CFG = ConversationConfig(practice_name="Lakeside Imaging", scheduling_phone="(555) 010-0200")
MRI = Booked("MR", datetime(2026, 12, 8, 14, 30, tzinfo=UTC))


def _texts(commands: list[object]) -> list[str]:
    return [c.text for c in commands if isinstance(c, SendText)]


def test_the_digits_mean_confirm_change_and_cancel_and_nothing_else_does() -> None:
    assert reply_of("1") is Reply.CONFIRM and reply_of(" 3 ") is Reply.CANCEL
    assert reply_of("2") is Reply.CHANGE
    assert reply_of("#3") is Reply.CANCEL
    for body in ("STOP", "cancel", "yes", "4", "hello"):
        assert reply_of(body) is None, body


def test_one_appointment_confirmed_another_asked_of_staff() -> None:
    commands, record = reply_commands(Reply.CONFIRM, [MRI], CFG)
    assert record == "confirmed" and "confirmed" in _texts(commands)[0]
    commands, record = reply_commands(Reply.CANCEL, [MRI], CFG)
    assert record == "cancel" and "scheduling team" in _texts(commands)[0]
    assert Audit("staff_request", "cancel") in commands


def test_several_appointments_go_to_staff_whatever_the_digit() -> None:
    for reply in Reply:
        commands, record = reply_commands(reply, [MRI, MRI], CFG)
        assert record == "unclear" and Audit("staff_request", "unclear") in commands


def test_a_decision_never_texts_an_opted_out_phone() -> None:
    for approved in (True, False):
        commands = decision_commands(
            approved=approved, consent=ConsentStatus.REVOKED, booked=MRI, cfg=CFG
        )
        assert _texts(commands) == []


@given(approved=st.booleans(), booked=st.sampled_from([MRI, None]))
def test_every_answer_is_one_segment_without_the_word_cancel(
    approved: bool, booked: Booked | None
) -> None:
    commands = decision_commands(
        approved=approved, consent=ConsentStatus.GRANTED, booked=booked, cfg=CFG
    )
    [text] = _texts(commands)
    assert segment_info(text).single_segment and "cancel" not in text.lower()
    assert ("no longer booked" in text) == (approved and booked is not None)
