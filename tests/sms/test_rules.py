"""Rules that hold in every state: STOP, HELP, expiry, cancellation, limits, stray events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from radsched.conversation import (
    Audit,
    BookingConfirmed,
    BookingRejected,
    ChangeRequested,
    ConsentStatus,
    DeferReason,
    DeferToStaff,
    EndConversation,
    EndReason,
    Event,
    InboundText,
    LocationsLoaded,
    OrderCancelled,
    OrderReceived,
    RecordConsent,
    RejectReason,
    RisDown,
    ScheduleWake,
    SlotsLoaded,
    State,
    TemplateId,
    Tick,
)
from radsched.conversation.model import BUSY_STATES, TERMINAL_STATES
from tests.sms.playbook import LOCATIONS, PHONE, PRACTICE, Playbook, slots

EVENING = datetime(2026, 6, 2, 1, 0, tzinfo=UTC)  # 21:00 in New York: quiet hours


def _booked(play: Playbook) -> Playbook:
    return _booking(play).ris(BookingConfirmed("K7M2QX"))


def _booking(play: Playbook) -> Playbook:
    return _choosing_slot(play).patient("1")


def _choosing_slot(play: Playbook) -> Playbook:
    return _loading_slots(play).ris(SlotsLoaded(slots(3), more_available=True))


def _loading_slots(play: Playbook) -> Playbook:
    return _choosing_location(play).patient("2")


def _rescheduling(play: Playbook) -> Playbook:
    """A change conversation ("2" after the booking) waiting for the lifecycle's reschedule."""
    play.feed(ChangeRequested("CR", "L2")).ris(LocationsLoaded(LOCATIONS))
    return play.ris(SlotsLoaded(slots(3), more_available=True)).patient("1")


def _choosing_location(play: Playbook) -> Playbook:
    return play.order().patient("yes").ris(LocationsLoaded(LOCATIONS))


# How to bring a fresh Playbook into each state, so every rule is tried in every state.
REACH: dict[State, Callable[[Playbook], Playbook]] = {
    State.NEW: lambda p: p,
    State.PENDING_FIRST_CONTACT: lambda p: p.at(EVENING).order(),
    State.AWAITING_CONSENT: lambda p: p.order(),
    State.LOADING_LOCATIONS: lambda p: p.order().patient("yes"),
    State.CHOOSING_LOCATION: _choosing_location,
    State.LOADING_SLOTS: _loading_slots,
    State.CHOOSING_SLOT: _choosing_slot,
    State.BOOKING: _booking,
    State.BOOKED: _booked,
    State.RESCHEDULING: _rescheduling,
    State.RESCHEDULED: lambda p: _rescheduling(p).ris(BookingConfirmed("K7M2QX")),
    State.OPTED_OUT: lambda p: p.order().patient("stop"),
    State.DEFERRED_TO_PHONE: lambda p: p.order().patient("no"),
    State.CANCELLED: lambda p: p.order().feed(OrderCancelled()),
    State.EXPIRED: lambda p: p.order().advance(timedelta(hours=25)).tick(),
}
LIVE = sorted(set(State) - TERMINAL_STATES - {State.NEW})


def reach(state: State) -> Playbook:
    play = REACH[state](Playbook())
    assert play.state is state
    return play


def test_every_state_is_reachable() -> None:
    assert set(REACH) == set(State)


# --- STOP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("body", ["STOP", "please stop texting me", "Opt-Out", "no más", "Cancel"])
def test_stop_revokes_in_every_state(state: State, body: str) -> None:
    play = reach(state).patient(body)
    play.in_state(State.OPTED_OUT)
    consent = [c for c in play.last if isinstance(c, RecordConsent)]
    assert len(consent) == 1 and not consent[0].granted
    if state is State.OPTED_OUT:
        play.silent()  # told once already
    else:
        play.says(PRACTICE, "no more texts", template=TemplateId.OPTED_OUT)
    if state in TERMINAL_STATES:
        play.lacks(EndConversation)
    else:
        play.ends("opted_out")
    if state in LIVE:
        play.does(DeferToStaff(DeferReason.OPTED_OUT))


def test_nothing_is_sent_after_stop_except_help_and_resubscribe() -> None:
    play = reach(State.CHOOSING_SLOT).patient("stop")
    for event in (InboundText("1", "SMa"), Tick(), RisDown(), OrderCancelled()):
        play.feed(event).silent()
    play.patient("more").silent().patient("yes please").in_state(State.DEFERRED_TO_PHONE)
    play.says(template=TemplateId.RESUBSCRIBED).does(RecordConsent(True, "yes"))


def test_booking_confirmed_after_stop_goes_to_staff_without_a_text() -> None:
    play = reach(State.BOOKING).patient("stop").ris(BookingConfirmed("K7M2QX"))
    play.silent().does(DeferToStaff(DeferReason.BOOKED_AFTER_END)).in_state(State.OPTED_OUT)


def test_start_after_stop_resubscribes_but_does_not_restart_the_booking() -> None:
    play = reach(State.CHOOSING_LOCATION).patient("STOP").patient("START")
    play.says(PRACTICE, PHONE, template=TemplateId.RESUBSCRIBED)
    play.does(RecordConsent(True, "start")).in_state(State.DEFERRED_TO_PHONE)


def test_stop_after_booking_keeps_the_booked_record_in_end_reason() -> None:
    play = reach(State.BOOKED).patient("stop").in_state(State.OPTED_OUT)
    assert play.conv.end_reason == "booked"
    play.patient("start").in_state(State.BOOKED)


# --- HELP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(State))
def test_help_answers_and_changes_nothing(state: State) -> None:
    play = reach(state)
    before = play.conv
    play.patient("HELP").says(PRACTICE, PHONE, template=TemplateId.HELP)
    assert play.state is before.state
    assert play.conv.last_menu == before.last_menu
    assert play.conv.unrecognised == before.unrecognised
    assert not any(isinstance(c, RecordConsent | EndConversation) for c in play.last)


# --- every state x every event: total, and the invariants hold --------------------------------

EVENTS: list[Event] = [
    OrderReceived("CR", True),
    InboundText("yes", "SMx1"),
    InboundText("1", "SMx2"),
    InboundText("more", "SMx3"),
    InboundText("what?", "SMx4"),
    InboundText("", "SMx5"),
    LocationsLoaded(LOCATIONS),
    LocationsLoaded(()),
    SlotsLoaded(slots(3), True),
    SlotsLoaded((), False),
    BookingConfirmed("K7M2QX"),
    BookingRejected(RejectReason.SLOT_TAKEN),
    BookingRejected(RejectReason.REJECTED),
    RisDown(),
    OrderCancelled(),
    Tick(),
]


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_in_every_state_is_handled(state: State, event: Event) -> None:
    play = reach(state)
    play.feed(event)  # invariants are checked by the playbook
    if state in TERMINAL_STATES:
        assert play.state in TERMINAL_STATES
        play.lacks(EndConversation)
        if not isinstance(event, InboundText):
            play.silent()


@pytest.mark.parametrize("state", [s for s in State if s is not State.BOOKING])
@pytest.mark.parametrize(
    "event",
    [
        LocationsLoaded(LOCATIONS),
        SlotsLoaded(slots(2), False),
        BookingRejected(RejectReason.SLOT_TAKEN),
    ],
    ids=lambda e: type(e).__name__,
)
def test_answers_nobody_asked_for_are_only_audited(state: State, event: Event) -> None:
    expected = {
        LocationsLoaded: {State.LOADING_LOCATIONS},
        SlotsLoaded: {State.LOADING_SLOTS},
        BookingRejected: {State.BOOKING, State.RESCHEDULING},
    }[type(event)]
    if state in expected:
        return
    play = reach(state)
    before = play.conv
    play.feed(event).silent()
    assert play.conv == before
    assert play.last == [Audit("late_ris_answer", type(event).__name__)]


def test_a_second_order_for_the_same_conversation_is_ignored() -> None:
    play = reach(State.CHOOSING_SLOT)
    before = play.conv
    play.order().silent()
    assert play.conv == before


def test_a_retried_webhook_is_applied_once() -> None:
    play = reach(State.CHOOSING_SLOT).patient("1", sid="SMdup").in_state(State.BOOKING)
    play.patient("1", sid="SMdup").silent().in_state(State.BOOKING)
    assert play.last == [Audit("duplicate_inbound")]


# --- unrecognised replies ------------------------------------------------------------------


@pytest.mark.parametrize(
    "state", [State.AWAITING_CONSENT, State.CHOOSING_LOCATION, State.CHOOSING_SLOT]
)
def test_unrecognised_replies_repeat_the_menu_then_call_us(state: State) -> None:
    play = reach(state)
    menu = play.conv.last_menu
    assert menu is not None
    play.patient("what is this about?").does(menu)
    play.patient("9").does(menu)  # out of range counts as not understood
    play.patient("tomorrow morning?").says(PHONE, template=TemplateId.CALL_US)
    play.does(DeferToStaff(DeferReason.UNRECOGNISED_REPLIES)).ends("deferred")


def test_progress_resets_the_unrecognised_count() -> None:
    play = reach(State.AWAITING_CONSENT).patient("huh").patient("huh").patient("yes")
    play.ris(LocationsLoaded(LOCATIONS)).patient("huh").patient("huh")
    play.in_state(State.CHOOSING_LOCATION)


def test_replies_while_the_ris_is_busy_are_ignored() -> None:
    for state in BUSY_STATES:
        play = reach(state).patient("1").silent().in_state(state)
        assert play.conv.unrecognised == 0


def test_more_without_further_pages_is_bounded() -> None:
    play = reach(State.CHOOSING_SLOT).patient("more").ris(SlotsLoaded((), False))
    play.says("No later times")
    play.patient("more").says("No later times")
    play.patient("more").says(template=TemplateId.CALL_US).ends("deferred")


# --- after the end -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state", [State.BOOKED, State.DEFERRED_TO_PHONE, State.CANCELLED, State.EXPIRED]
)
def test_a_reply_after_the_end_gets_one_closed_text(state: State) -> None:
    play = reach(state).patient("1").says(PHONE, template=TemplateId.ENDED).in_state(state)
    play.patient("hello?").silent().in_state(state)


def test_a_reply_after_opt_out_gets_nothing() -> None:
    reach(State.OPTED_OUT).patient("1").silent().in_state(State.OPTED_OUT)


# --- cancellation --------------------------------------------------------------------------


@pytest.mark.parametrize("state", LIVE)
def test_order_cancelled_mid_conversation_ends_silently(state: State) -> None:
    play = reach(state).feed(OrderCancelled()).silent().ends("cancelled")
    play.lacks(DeferToStaff).in_state(State.CANCELLED)
    play.patient("2").says(template=TemplateId.ENDED)


def test_a_repeated_booking_confirmation_is_only_audited() -> None:
    for play in (reach(State.BOOKED), reach(State.BOOKED).patient("stop")):
        play.ris(BookingConfirmed("K7M2QX")).silent()
        assert play.last == [Audit("duplicate_booking_confirmation")]


def test_booking_confirmed_after_cancel_goes_to_staff() -> None:
    play = reach(State.BOOKING).feed(OrderCancelled()).ris(BookingConfirmed("K7M2QX"))
    play.silent().does(DeferToStaff(DeferReason.BOOKED_AFTER_END))


# --- expiry --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state", [s for s in LIVE if s not in BUSY_STATES | {State.PENDING_FIRST_CONTACT}]
)
def test_expiry_24_hours_after_last_activity(state: State) -> None:
    play = reach(state)
    expires = play.conv.expires_at
    assert expires is not None
    play.at(expires - timedelta(seconds=1)).tick().in_state(state)
    play.at(expires).tick().silent().in_state(State.EXPIRED)
    play.does(Audit("expired"), DeferToStaff(DeferReason.EXPIRED)).ends("expired")


def test_activity_pushes_expiry_out() -> None:
    play = reach(State.AWAITING_CONSENT)
    assert play.conv.expires_at == play.now + timedelta(hours=24)
    play.advance(timedelta(hours=20)).patient("yes").ris(LocationsLoaded(LOCATIONS))
    assert play.conv.expires_at == play.now + timedelta(hours=24)
    play.advance(timedelta(hours=23)).tick().in_state(State.CHOOSING_LOCATION)


def test_lifetime_cap_bounds_a_conversation_that_keeps_going() -> None:
    play = reach(State.CHOOSING_LOCATION)
    created = play.conv.created_at
    for _ in range(3):
        play.advance(timedelta(hours=20)).patient("help").in_state(State.CHOOSING_LOCATION)
    assert play.conv.expires_at == created + timedelta(hours=72)
    play.at(created + timedelta(hours=72)).tick().in_state(State.EXPIRED)


def test_wake_is_scheduled_for_the_next_deadline() -> None:
    play = Playbook().order()
    assert ScheduleWake(play.now + timedelta(hours=24)) in play.last
    play.patient("yes")
    assert ScheduleWake(play.now + timedelta(minutes=10)) in play.last


@pytest.mark.parametrize("state", LIVE)
def test_events_after_a_missed_expiry_tick_see_an_expired_conversation(state: State) -> None:
    play = reach(state).advance(timedelta(hours=80)).patient("1")
    play.does(DeferToStaff(DeferReason.EXPIRED), EndConversation(EndReason.EXPIRED))
    play.says(template=TemplateId.ENDED).in_state(State.EXPIRED)


def test_early_or_spurious_ticks_do_nothing() -> None:
    for state in State:
        play = reach(state)
        before = play.conv
        play.tick()
        assert play.conv == before and play.last == []


# --- quiet hours ---------------------------------------------------------------------------


def test_order_in_quiet_hours_waits_for_morning() -> None:
    play = Playbook(now=EVENING).order().silent().in_state(State.PENDING_FIRST_CONTACT)
    nine_am = datetime(2026, 6, 2, 13, 0, tzinfo=UTC)
    assert ScheduleWake(nine_am) in play.last
    play.at(nine_am - timedelta(minutes=1)).tick().silent()
    play.at(nine_am).tick().says(template=TemplateId.CONSENT_REQUEST)
    play.in_state(State.AWAITING_CONSENT)


def test_quiet_hours_never_delay_replies() -> None:
    play = reach(State.AWAITING_CONSENT).at(EVENING).patient("yes")
    play.ris(LocationsLoaded(LOCATIONS)).says("1 Main Street Imaging")


def test_patient_writing_during_the_wait_gets_the_first_text_as_a_reply() -> None:
    play = Playbook(now=EVENING).order().patient("hello?")
    play.says(template=TemplateId.CONSENT_REQUEST).in_state(State.AWAITING_CONSENT)


def test_call_us_for_a_disabled_modality_also_waits_for_morning() -> None:
    play = Playbook(now=EVENING).order("MR", modality_enabled=False).silent()
    play.does(DeferToStaff(DeferReason.MODALITY_DISABLED)).in_state(State.PENDING_FIRST_CONTACT)
    play.at(datetime(2026, 6, 2, 13, 0, tzinfo=UTC)).tick()
    play.says(template=TemplateId.CALL_US).lacks(DeferToStaff).ends("deferred")


@pytest.mark.parametrize(
    ("order_at", "first_text_at"),
    [
        # Spring forward (8 Mar 2026): 09:00 EDT is 13:00 UTC, one hour earlier than the day before.
        (datetime(2026, 3, 8, 2, 0, tzinfo=UTC), datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
        # Fall back (1 Nov 2026): 09:00 EST is 14:00 UTC.
        (datetime(2026, 11, 1, 1, 30, tzinfo=UTC), datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
    ],
)
def test_quiet_hours_across_dst(order_at: datetime, first_text_at: datetime) -> None:
    play = Playbook(now=order_at).order().in_state(State.PENDING_FIRST_CONTACT)
    assert play.conv.first_contact_at == first_text_at
    play.at(first_text_at).tick().says(template=TemplateId.CONSENT_REQUEST)


def test_order_that_waited_too_long_expires_instead_of_texting_late() -> None:
    play = Playbook(now=EVENING).order()
    play.advance(timedelta(hours=30)).tick().silent().in_state(State.EXPIRED)


def test_consent_status_granted_still_asks_first() -> None:
    Playbook().order(consent=ConsentStatus.GRANTED).says(template=TemplateId.CONSENT_REQUEST)
