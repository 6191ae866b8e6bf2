"""The stored form of a conversation, and texts from numbers without a conversation."""

from __future__ import annotations

import json

import pytest

from radsched.conversation import (
    ConsentStatus,
    InboundText,
    RecordConsent,
    SendText,
    State,
    TemplateId,
    dump_conversation,
    load_conversation,
    stray_reply,
)
from radsched.conversation.gsm import Encoding, segment_info
from tests.sms.playbook import MORNING, PHONE, config
from tests.sms.test_rules import reach


@pytest.mark.parametrize("state", list(State))
def test_codec_round_trips_through_json(state: State) -> None:
    conv = reach(state).conv
    stored = json.loads(json.dumps(dump_conversation(conv)))
    assert load_conversation(stored) == conv


def test_codec_refuses_unknown_formats_and_broken_rows() -> None:
    data = dump_conversation(reach(State.CHOOSING_SLOT).conv)
    with pytest.raises(ValueError, match="format"):
        load_conversation({**data, "format": 99})
    broken = dict(data)
    del broken["slots"]
    with pytest.raises(ValueError, match="malformed"):
        load_conversation(broken)
    with pytest.raises(ValueError):
        load_conversation({**data, "state": "dancing"})
    with pytest.raises(ValueError, match="offset"):
        load_conversation({**data, "created_at": "2026-06-01T12:00:00"})


def test_stored_state_has_no_message_bodies() -> None:
    play = reach(State.CHOOSING_SLOT).patient("my secret diagnosis is X")
    assert "secret" not in json.dumps(dump_conversation(play.conv))
    assert "secret" not in repr(play.last)


def _stray(body: str, consent: ConsentStatus, recent: int = 0) -> list[object]:
    return list(stray_reply(InboundText(body, "SMs"), consent, recent, MORNING, config()))


def _texts(commands: list[object]) -> list[TemplateId]:
    return [c.template_id for c in commands if isinstance(c, SendText)]


def test_stray_stop_revokes_and_confirms_once() -> None:
    commands = _stray("stop", ConsentStatus.UNKNOWN)
    assert RecordConsent(False, "stop") in commands
    assert _texts(commands) == [TemplateId.OPTED_OUT]
    again = _stray("stop", ConsentStatus.REVOKED)
    assert RecordConsent(False, "stop") in again and _texts(again) == []


def test_stray_start_or_yes_resubscribes_when_revoked() -> None:
    for body in ("START", "yes"):
        commands = _stray(body, ConsentStatus.REVOKED)
        assert RecordConsent(True, body.lower()) in commands
        assert _texts(commands) == [TemplateId.RESUBSCRIBED]


def test_stray_text_is_answered_once_then_ignored() -> None:
    assert _texts(_stray("hi, I need an x-ray", ConsentStatus.UNKNOWN)) == [TemplateId.ENDED]
    assert _texts(_stray("hi, I need an x-ray", ConsentStatus.UNKNOWN, recent=1)) == []
    assert _texts(_stray("hello", ConsentStatus.REVOKED)) == []
    assert _texts(_stray("help", ConsentStatus.REVOKED, recent=5)) == [TemplateId.HELP]


def test_segment_accounting() -> None:
    assert segment_info("a" * 160).segments == 1
    assert segment_info("a" * 161).segments == 2
    assert segment_info("€" * 80).units == 160
    assert segment_info("€" * 81).segments == 2
    ucs = segment_info("á" * 70)
    assert ucs.encoding is Encoding.UCS2 and ucs.single_segment
    assert segment_info("á" * 71).segments == 2
    assert segment_info("🙂").units == 2
    assert PHONE in _stray_text()


def _stray_text() -> str:
    (text,) = [c for c in _stray("what", ConsentStatus.UNKNOWN) if isinstance(c, SendText)]
    return text.text


def test_events_that_would_mislead_the_patient_cannot_be_built() -> None:
    from datetime import datetime

    from radsched.conversation import BookingConfirmed, MenuSlot

    with pytest.raises(ValueError, match="aware"):
        MenuSlot("S1", "L1", datetime(2026, 6, 2, 9, 0))
    with pytest.raises(ValueError, match="aware"):
        BookingConfirmed("ABC123", start=datetime(2026, 6, 2, 9, 0))
    for bad in ("", "X" * 17, "CÓDIGO", "AB\nCD", "AB{CD}"):
        with pytest.raises(ValueError, match="confirmation_code"):
            BookingConfirmed(bad)
    assert BookingConfirmed("APPT-2026-000123").confirmation_code == "APPT-2026-000123"
