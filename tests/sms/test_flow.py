"""Playbooks for the conversation's main paths (DESIGN.md section 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from radsched.conversation import (
    Book,
    BookingConfirmed,
    BookingRejected,
    ConsentStatus,
    DeferReason,
    DeferToStaff,
    FetchLocations,
    FetchSlots,
    LocationsLoaded,
    MenuLocation,
    RecordConsent,
    RejectReason,
    SlotsLoaded,
    State,
    TemplateId,
)
from tests.sms.playbook import LOCATIONS, PHONE, PRACTICE, Playbook, config, slots


def to_slot_menu(play: Playbook | None = None) -> Playbook:
    play = play or Playbook()
    play.order().says(PRACTICE, "Reply YES", "STOP", template=TemplateId.CONSENT_REQUEST)
    play.patient("Yes").does(RecordConsent(True, "yes"), FetchLocations("CR")).silent()
    play.ris(LocationsLoaded(LOCATIONS)).says(
        "1 Main Street Imaging", "2 Northside Clinic", "3 Harbor View Center"
    )
    play.patient("2").does(FetchSlots("L2", "CR", None, 3)).silent()
    play.ris(SlotsLoaded(slots(3), more_available=True))
    return play


def test_happy_path_books_and_confirms_with_code() -> None:
    play = to_slot_menu()
    play.says(
        "Open times at Northside Clinic",
        "1 Tue Jun 2 9:00am",
        "2 Tue Jun 2 10:00am",
        "3 Tue Jun 2 11:00am",
        "MORE for later times",
    ).in_state(State.CHOOSING_SLOT)
    assert play.texts[0].time_sensitive
    play.patient("#2").does(Book("S1", "L2", "CR")).in_state(State.BOOKING).silent()
    play.ris(BookingConfirmed("K7M2QX")).says(
        "X-ray", "Northside Clinic", "Tue Jun 2 10:00am", "K7M2QX", PHONE
    ).ends("booked").in_state(State.BOOKED)


def test_spanish_patient_says_si_and_gets_spanish_texts() -> None:
    play = Playbook()
    play.order(language="es").says("Responda SI")
    play.patient("Sí").does(FetchLocations("CR"))
    play.ris(LocationsLoaded(LOCATIONS)).says("Responda con el numero del lugar")
    play.patient("uno").does(FetchSlots("L1", "CR", None, 3))
    play.ris(SlotsLoaded(slots(2, location="L1"), more_available=False)).says("mar 2 jun 9:00")
    play.patient("dos").ris(BookingConfirmed("ABC234")).says("radiografia", "Codigo ABC234")


def test_more_pages_through_later_slots_then_runs_out() -> None:
    play = to_slot_menu()
    last_offered = slots(3)[-1].start
    play.patient("MORE").does(FetchSlots("L2", "CR", last_offered, 3)).silent()
    play.in_state(State.LOADING_SLOTS)
    later = slots(2, first=last_offered + timedelta(days=1), prefix="T")
    play.ris(SlotsLoaded(later, more_available=False)).says(
        "1 Wed Jun 3 11:00am", "2 Wed Jun 3 12:00pm"
    )
    assert "MORE" not in play.text()
    # At the end of the list MORE says so, and the last menu still counts.
    play.patient("more").says("No later times at Northside Clinic", PHONE)
    play.in_state(State.CHOOSING_SLOT)
    play.patient("2").does(Book("T1", "L2", "CR"))


def test_more_when_the_ris_finds_nothing_later_keeps_the_old_menu() -> None:
    play = to_slot_menu()
    play.patient("más").ris(SlotsLoaded((), more_available=False))
    play.says("No later times").in_state(State.CHOOSING_SLOT)
    play.patient("1").does(Book("S0", "L2", "CR"))


def test_slot_taken_offers_fresh_slots_then_books() -> None:
    play = to_slot_menu()
    play.patient("1").does(Book("S0", "L2", "CR"))
    play.ris(BookingRejected(RejectReason.SLOT_TAKEN)).silent()
    play.does(FetchSlots("L2", "CR", None, 3)).in_state(State.LOADING_SLOTS)
    play.ris(SlotsLoaded(slots(3)[1:], more_available=False))
    play.says("that time was just taken", "1 Tue Jun 2 10:00am", template=TemplateId.SLOT_TAKEN)
    play.patient("1").does(Book("S1", "L2", "CR"))
    play.ris(BookingConfirmed("QQ7777")).says("10:00am", "QQ7777").ends("booked")


def test_slot_taken_too_often_hands_over_to_staff() -> None:
    play = to_slot_menu(Playbook(config(max_booking_attempts=2)))
    play.patient("1").ris(BookingRejected(RejectReason.SLOT_TAKEN))
    play.ris(SlotsLoaded(slots(3), more_available=False)).patient("1")
    play.ris(BookingRejected(RejectReason.SLOT_TAKEN)).says(PHONE, template=TemplateId.CALL_US)
    play.does(DeferToStaff(DeferReason.BOOKING_REJECTED)).ends("deferred")


def test_booking_refused_for_another_reason_hands_over_to_staff() -> None:
    play = to_slot_menu()
    play.patient("3").ris(BookingRejected(RejectReason.REJECTED))
    play.says(PHONE, template=TemplateId.CALL_US).ends("deferred")


def test_no_times_at_a_location_offers_the_others() -> None:
    play = Playbook()
    play.order().patient("y").ris(LocationsLoaded(LOCATIONS)).patient("1")
    play.ris(SlotsLoaded((), more_available=False))
    play.says(
        "No times soon at Main Street Imaging", "1 Northside Clinic", "2 Harbor View Center"
    ).in_state(State.CHOOSING_LOCATION)
    play.patient("2").does(FetchSlots("L3", "CR", None, 3))
    play.ris(SlotsLoaded((), more_available=False)).says("1 Northside Clinic")
    assert "Harbor" not in play.text().split("\n", 1)[1]
    play.patient("1").ris(SlotsLoaded((), more_available=False))
    play.says(PHONE, template=TemplateId.NO_AVAILABILITY)
    play.does(DeferToStaff(DeferReason.NO_AVAILABILITY)).ends("deferred")


def test_no_location_offers_the_modality() -> None:
    play = Playbook().order().patient("yes")
    play.ris(LocationsLoaded(())).says(PHONE, template=TemplateId.NO_AVAILABILITY)
    play.does(DeferToStaff(DeferReason.NO_AVAILABILITY)).ends("deferred")


def test_long_location_lists_page_with_more() -> None:
    many = tuple(MenuLocation(f"L{i}", f"Radiology Center {i}") for i in range(1, 8))
    play = Playbook().order().patient("yes").ris(LocationsLoaded(many))
    first = play.text()
    assert "1 Radiology Center 1" in first and "MORE for others" in first
    shown = len(play.conv.location_menu)
    assert 1 <= shown < len(many)
    play.patient("more")
    assert f"1 Radiology Center {shown + 1}" in play.text()
    play.patient("1").does(FetchSlots(f"L{shown + 1}", "CR", None, 3))


def test_slots_already_started_are_never_offered() -> None:
    play = Playbook().order().patient("yes").ris(LocationsLoaded(LOCATIONS)).patient("2")
    past = slots(2, first=play.now - timedelta(hours=1), prefix="P")
    play.ris(SlotsLoaded(past + slots(1), more_available=False))
    play.says("1 Tue Jun 2 9:00am")
    assert [line[0] for line in play.text().splitlines()[1:]] == ["1"]


# RIS down at each step: tests/sms/test_ris_wait.py (issue 13 item 6).


def test_disabled_modality_gets_the_call_us_text() -> None:
    play = Playbook().order("MR", modality_enabled=False)
    play.says(f"please call {PHONE}", template=TemplateId.CALL_US)
    play.does(DeferToStaff(DeferReason.MODALITY_DISABLED)).ends("deferred")


def test_patient_who_opted_out_before_is_not_texted() -> None:
    play = Playbook().order(consent=ConsentStatus.REVOKED).silent()
    play.does(DeferToStaff(DeferReason.OPTED_OUT)).ends("opted_out")


def test_landline_is_not_texted() -> None:
    play = Playbook().order(textable=False).silent()
    play.does(DeferToStaff(DeferReason.NOT_TEXTABLE)).ends("deferred")


def test_no_declines_politely_and_hands_over() -> None:
    play = Playbook().order().patient("No thanks")
    play.says(PHONE, template=TemplateId.DECLINED).lacks(RecordConsent)
    play.does(DeferToStaff(DeferReason.PATIENT_DECLINED)).ends("deferred")


def test_start_also_works_as_consent() -> None:
    Playbook().order().patient("START").does(RecordConsent(True, "start"), FetchLocations("CR"))


def test_confirmation_uses_the_rescheduled_time_the_ris_returns() -> None:
    play = to_slot_menu().patient("1")
    moved = datetime(2026, 6, 2, 14, 30, tzinfo=UTC)
    play.ris(BookingConfirmed("ZX9", start=moved, location_name="Northside Annex"))
    play.says("Northside Annex", "Tue Jun 2 10:30am", "ZX9")


def test_confirmation_never_names_the_procedure_beyond_the_modality() -> None:
    play = to_slot_menu(Playbook()).patient("1").ris(BookingConfirmed("C0DE"))
    assert "X-ray" in play.text()
    unknown = Playbook().order("ZZ").patient("y").ris(LocationsLoaded(LOCATIONS)).patient("1")
    unknown.ris(SlotsLoaded(slots(1, location="L1"), False)).patient("1")
    unknown.ris(BookingConfirmed("C0DE")).says("imaging exam")
