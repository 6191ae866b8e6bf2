"""Playbooks for a change conversation: "2" after the booking moves the appointment (issue 13 item 2).

The conversation starts with ``ChangeRequested`` (the appointment's modality and location), shows
the slot menu at that location (MORE for later times) and, on a choice, issues ``Reschedule``,
which the engine performs through the lifecycle and answers like a booking.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from radsched.conversation import (
    BookingConfirmed,
    BookingRejected,
    ChangeRequested,
    ConsentStatus,
    ConversationKind,
    DeferToStaff,
    FetchLocations,
    FetchSlots,
    LocationsLoaded,
    RecordConsent,
    RejectReason,
    Reschedule,
    RisDown,
    SlotsLoaded,
    State,
    TemplateId,
)
from radsched.conversation.after_booking import Booked, Reply, reply_commands, reply_of
from radsched.conversation.keywords import Places, classify
from radsched.conversation.model import Book, SendText
from tests.sms.playbook import LOCATIONS, Playbook, config, slots
from tests.sms.test_flow import to_slot_menu

NEW_START = datetime(2026, 6, 2, 13, 0, tzinfo=UTC)  # 09:00 New York, slot S0


def to_change_menu(play: Playbook | None = None) -> Playbook:
    play = play or Playbook()
    play.feed(ChangeRequested("CR", "L2")).does(FetchLocations("CR")).silent()
    play.in_state(State.LOADING_LOCATIONS)
    assert play.conv.kind is ConversationKind.RESCHEDULE
    # The appointment's own location: straight to its times, no location menu.
    play.ris(LocationsLoaded(LOCATIONS)).does(FetchSlots("L2", "CR", None, 3)).silent()
    play.ris(SlotsLoaded(slots(3), more_available=True))
    return play


def test_two_then_a_slot_moves_the_appointment_and_texts_the_new_code() -> None:
    play = to_change_menu()
    play.says(
        "Other times at Northside Clinic", "1 Tue", "MORE", template=TemplateId.CHANGE_MENU
    ).in_state(State.CHOOSING_SLOT)
    play.patient("1").does(Reschedule("S0", "L2", "CR")).lacks(Book).silent()
    play.in_state(State.RESCHEDULING)
    play.ris(BookingConfirmed("K7Q2M9", appointment_id="A1", start=NEW_START))
    play.says("Moved:", "Northside Clinic", "Tue Jun 2 9:00am", "Code K7Q2M9")
    play.says(template=TemplateId.RESCHEDULED).ends("rescheduled").in_state(State.RESCHEDULED)
    play.lacks(DeferToStaff)


def test_more_shows_later_times_at_the_same_location() -> None:
    play = to_change_menu()
    last_shown = play.conv.slots[-1].start
    play.patient("more").does(FetchSlots("L2", "CR", last_shown, 3)).silent()
    later = slots(2, first=last_shown + timedelta(hours=1), prefix="T")
    play.ris(SlotsLoaded(later, more_available=False)).says(template=TemplateId.CHANGE_MENU)
    play.patient("2").does(Reschedule("T1", "L2", "CR"))


def test_a_taken_slot_offers_the_menu_again_and_a_refusal_goes_to_the_phone() -> None:
    play = to_change_menu()
    play.patient("1")
    play.ris(BookingRejected(RejectReason.SLOT_TAKEN)).does(FetchSlots("L2", "CR", None, 3))
    play.silent().in_state(State.LOADING_SLOTS)
    play.ris(SlotsLoaded(slots(3, prefix="U"), more_available=False))
    play.says("just taken", template=TemplateId.SLOT_TAKEN)
    play.patient("2").does(Reschedule("U1", "L2", "CR"))
    play.ris(BookingRejected(RejectReason.REJECTED)).says(template=TemplateId.CALL_US)
    play.ends("deferred")


def test_l_offers_the_other_locations_and_a_move_there() -> None:
    play = to_change_menu()
    play.patient("L").says("1 Main Street Imaging", "3 Harbor View Center")
    play.says(template=TemplateId.LOCATION_MENU).in_state(State.CHOOSING_LOCATION)
    play.patient("3").does(FetchSlots("L3", "CR", None, 3)).silent()
    play.ris(SlotsLoaded(slots(2, location="L3", prefix="H"), more_available=False))
    play.says("Other times at Harbor View Center", template=TemplateId.CHANGE_MENU)
    play.patient("1").does(Reschedule("H0", "L3", "CR")).in_state(State.RESCHEDULING)
    play.ris(BookingConfirmed("K7Q2M9", start=NEW_START)).says("Moved:", "Harbor View Center")


def test_l_and_its_words_mean_places_and_a_choice_still_wins() -> None:
    for body in ("L", "l.", "other places", "Locations", "otro lugar", "LUGAR"):
        assert isinstance(classify(body), Places), body
    assert not isinstance(classify("1 L"), Places) and not isinstance(classify("hello"), Places)


def test_l_means_nothing_in_a_booking_conversation() -> None:
    play = to_slot_menu().patient("L")
    play.says(template=TemplateId.SLOT_MENU).in_state(State.CHOOSING_SLOT)  # the menu again


def test_the_location_gone_or_without_times_offers_the_others() -> None:
    play = Playbook().feed(ChangeRequested("CR", "L9"))
    play.ris(LocationsLoaded(LOCATIONS)).says(template=TemplateId.LOCATION_MENU)
    play = Playbook().feed(ChangeRequested("CR", "L2")).ris(LocationsLoaded(LOCATIONS))
    play.ris(SlotsLoaded((), more_available=False)).says(
        "No times soon at Northside Clinic", template=TemplateId.NO_SLOTS_AT_LOCATION
    )
    play = Playbook().feed(ChangeRequested("CR", "L2"))
    play.ris(LocationsLoaded((LOCATIONS[1],))).ris(SlotsLoaded((), more_available=False))
    play.says(template=TemplateId.NO_AVAILABILITY).ends("deferred")


def test_an_opted_out_phone_gets_no_menu() -> None:
    play = Playbook().feed(ChangeRequested("CR", "L2", ConsentStatus.REVOKED))
    play.silent().lacks(FetchLocations).ends("opted_out")


@pytest.mark.parametrize("at", ["loading_locations", "choosing_slot", "rescheduling"])
def test_stop_in_the_change_conversation_opts_out(at: str) -> None:
    play = Playbook().feed(ChangeRequested("CR", "L2"))
    if at != "loading_locations":
        play.ris(LocationsLoaded(LOCATIONS)).ris(SlotsLoaded(slots(3), more_available=False))
    if at == "rescheduling":
        play.patient("1")
    play.in_state(State(at))
    play.patient("STOP").does(RecordConsent(False, "stop")).says(template=TemplateId.OPTED_OUT)
    play.ends("opted_out").in_state(State.OPTED_OUT)
    # A move the RIS makes after the STOP is not texted: a person follows it up.
    play.ris(BookingConfirmed("K7Q2M9", start=NEW_START)).silent()


def test_the_change_conversation_expires_like_a_booking_one() -> None:
    play = to_change_menu()
    play.advance(config().idle_expiry).tick().silent().ends("expired")


def test_ris_down_while_moving_asks_again_with_the_same_slot() -> None:
    play = to_change_menu().patient("2")
    play.ris(RisDown()).says(template=TemplateId.RIS_WAIT).in_state(State.RESCHEDULING)
    at = play.conv.ris_retry_at
    assert at is not None
    play.at(at).tick().does(Reschedule("S1", "L2", "CR")).silent()
    play.ris(BookingConfirmed("K7Q2M9", start=slots(3)[1].start)).says("Moved:")


def test_two_means_change_for_one_appointment_and_staff_for_several() -> None:
    mri = Booked("MR", NEW_START)
    assert reply_of("2") is Reply.CHANGE and reply_of(" #2 ") is Reply.CHANGE
    commands, record = reply_commands(Reply.CHANGE, [mri], config())
    # No text here: the change conversation's first text is the menu.
    assert record == "change" and not [c for c in commands if isinstance(c, SendText)]
    commands, record = reply_commands(Reply.CHANGE, [mri, mri], config())
    assert record == "unclear" and any(isinstance(c, SendText) for c in commands)
