"""Playbooks for a RIS outage (issue 13 item 6): wait for the RIS, retry, continue; hand over late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from radsched.conversation import (
    Book,
    BookingConfirmed,
    DeferReason,
    DeferToStaff,
    FetchLocations,
    FetchSlots,
    LocationsLoaded,
    RisDown,
    SlotsLoaded,
    State,
    TemplateId,
)
from radsched.conversation.codec import dump_conversation, load_conversation
from radsched.conversation.ris_wait import retry_delay
from tests.sms.playbook import LOCATIONS, PHONE, Playbook, config, slots
from tests.sms.test_flow import to_slot_menu

WAITING = "we'll text you shortly"


def _retry(play: Playbook) -> Playbook:
    """Move to the retry time the conversation asked for and let the timer fire."""
    at = play.conv.ris_retry_at
    assert at is not None and play.conv.wake_at == at
    return play.at(at).tick()


def test_backoff_doubles_then_stays_at_two_minutes() -> None:
    assert [retry_delay(n).total_seconds() for n in range(5)] == [15, 30, 60, 120, 120]


def test_ris_known_down_at_order_time_still_sends_the_consent_text() -> None:
    play = Playbook().order(ris_reachable=False)
    play.says(template=TemplateId.CONSENT_REQUEST).in_state(State.AWAITING_CONSENT)
    play.lacks(DeferToStaff)


def test_ris_down_when_loading_locations_waits_and_continues() -> None:
    play = Playbook().order().patient("yes")
    play.ris(RisDown()).says(WAITING, template=TemplateId.RIS_WAIT).lacks(DeferToStaff)
    play.in_state(State.LOADING_LOCATIONS)
    _retry(play).does(FetchLocations("CR")).silent()
    # Still down: asked again later, and the patient is not told a second time.
    play.ris(RisDown()).silent().lacks(DeferToStaff)
    _retry(play).does(FetchLocations("CR"))
    play.ris(LocationsLoaded(LOCATIONS)).says("1 Main Street Imaging")
    play.in_state(State.CHOOSING_LOCATION)
    assert play.conv.ris_wait_since is None and play.conv.ris_retry_at is None


def test_ris_down_when_loading_slots_asks_for_the_same_page_again() -> None:
    play = to_slot_menu()
    play.patient("more").ris(RisDown()).says(template=TemplateId.RIS_WAIT)
    after = play.conv.slots[-1].start
    _retry(play).does(FetchSlots("L2", "CR", after, 3))
    later = slots(2, first=after + timedelta(hours=1), prefix="T")
    play.ris(SlotsLoaded(later, more_available=False)).says("Open times at Northside Clinic")


def test_booking_outcome_unknown_asks_the_ris_again_and_confirms() -> None:
    play = to_slot_menu()
    play.patient("1").ris(RisDown()).says(template=TemplateId.RIS_WAIT)
    play.in_state(State.BOOKING).lacks(DeferToStaff)
    _retry(play).does(Book("S0", "L2", "CR"))
    play.ris(BookingConfirmed("K7M2QX")).says("K7M2QX").ends("booked")


def test_ris_silent_past_the_busy_timeout_counts_as_down() -> None:
    play = Playbook().order().patient("yes")
    play.advance(timedelta(minutes=9)).tick().silent().in_state(State.LOADING_LOCATIONS)
    play.advance(timedelta(minutes=1)).tick().says(template=TemplateId.RIS_WAIT)
    # An answer that arrives while waiting continues the conversation (the engine drops
    # one meant for an earlier call: tests/smsflow).
    play.ris(LocationsLoaded(LOCATIONS)).says("1 Main Street Imaging")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [(None, DeferReason.RIS_UNAVAILABLE), ("1", DeferReason.BOOKING_OUTCOME_UNKNOWN)],
)
def test_after_ris_wait_max_the_patient_is_asked_to_call(
    reply: str | None, reason: DeferReason
) -> None:
    play = to_slot_menu()
    play.patient(reply or "more").ris(RisDown()).says(template=TemplateId.RIS_WAIT)
    started = play.now
    while play.now - started < timedelta(minutes=30):
        _retry(play).ris(RisDown())
        if play.conv.is_over:
            break
        play.silent()
    play.says(PHONE, template=TemplateId.CALL_US).does(DeferToStaff(reason)).ends("deferred")
    assert play.now - started >= timedelta(minutes=30)


def test_ris_wait_max_is_a_setting() -> None:
    play = Playbook(config(ris_wait_max=timedelta(seconds=20))).order().patient("yes")
    play.ris(RisDown()).says(template=TemplateId.RIS_WAIT)
    _retry(play).ris(RisDown()).silent()
    _retry(play).ris(RisDown()).says(template=TemplateId.CALL_US).ends("deferred")


def test_inside_quiet_hours_the_order_goes_to_staff_at_once() -> None:
    night = datetime(2026, 6, 2, 2, 0, tzinfo=UTC)  # 22:00 in New York
    play = Playbook().order().at(night).patient("yes")  # a reply at night is answered at once
    play.ris(RisDown()).says(template=TemplateId.CALL_US)
    play.does(DeferToStaff(DeferReason.RIS_UNAVAILABLE)).ends("deferred")


def test_stop_while_waiting_ends_and_no_retry_follows() -> None:
    play = Playbook().order().patient("yes").ris(RisDown())
    play.patient("STOP").says(template=TemplateId.OPTED_OUT).ends("opted_out")
    assert play.conv.wake_at is None
    play.advance(timedelta(minutes=5)).tick().silent().lacks(FetchLocations)


def test_a_reply_while_waiting_is_not_a_menu_choice() -> None:
    play = to_slot_menu().patient("1").ris(RisDown())
    play.patient("2").silent().lacks(Book).in_state(State.BOOKING)


def test_the_wait_survives_a_restart_through_the_codec() -> None:
    play = Playbook().order().patient("yes").ris(RisDown())
    restored = load_conversation(dump_conversation(play.conv))
    assert restored == play.conv
    # A row written before the RIS wait existed still loads.
    old = {k: v for k, v in dump_conversation(play.conv).items() if not k.startswith("ris_")}
    assert load_conversation(old).ris_retry_at is None
