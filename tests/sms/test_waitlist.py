"""The pure rules of earlier-slot offers (radsched.conversation.waitlist, issue 13 item 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from radsched.conversation.after_booking import Booked
from radsched.conversation.gsm import segment_info
from radsched.conversation.model import BookingConfirmed, ConsentStatus, SendText
from radsched.conversation.waitlist import (
    Candidate,
    Outcome,
    Vacancy,
    WaitlistReply,
    next_candidate,
    offer_text,
    offers_waitlist,
    outcome_commands,
    toggle_commands,
    waitlist_reply,
)
from tests.sms.playbook import config, slots
from tests.sms.test_flow import to_slot_menu

NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
HOLD = timedelta(minutes=30)
SLOT = Vacancy(NOW + timedelta(days=2), "L1", "CR")
CFG = config(waitlist_after=timedelta(days=3))


def _candidate(n: int, **kw: object) -> Candidate:
    values: dict[str, object] = {
        "entry_id": n,
        "joined_at": NOW - timedelta(hours=10 - n),
        "location_id": "L1",
        "modality": "CR",
        "appointment_start": NOW + timedelta(days=9),
        "phone_hash": f"h{n}",
        "consent": ConsentStatus.GRANTED,
        "phone_has_live_offer": False,
        "phone_busy": False,
    }
    values.update(kw)
    return Candidate(**values)  # type: ignore[arg-type]


def test_w_toggles_and_yes_no_belong_to_the_offer_only_while_one_is_live() -> None:
    assert waitlist_reply("W", live_offer=False) is WaitlistReply.TOGGLE
    assert waitlist_reply(" w. ", live_offer=True) is WaitlistReply.TOGGLE
    # Without a live offer YES is a booking conversation's (consent) word: not ours.
    for body in ("YES", "yes", "no", "1", "STOP", "what?"):
        assert waitlist_reply(body, live_offer=False) is None, body
    assert waitlist_reply("Yes", live_offer=True) is WaitlistReply.TAKE
    assert waitlist_reply("si", live_offer=True) is WaitlistReply.TAKE
    assert waitlist_reply("no", live_offer=True) is WaitlistReply.PASS
    assert waitlist_reply("STOP", live_offer=True) is None  # opt-out goes the usual way
    assert waitlist_reply("2", live_offer=True) is None


def test_the_confirmation_offers_the_waitlist_only_beyond_the_minimum_days() -> None:
    assert offers_waitlist(NOW + timedelta(days=3, minutes=1), NOW, CFG)
    assert not offers_waitlist(NOW + timedelta(days=3), NOW, CFG)
    assert not offers_waitlist(NOW + timedelta(days=30), NOW, config())  # off (None)


def test_a_booking_far_out_is_confirmed_with_reply_w_a_near_one_without() -> None:
    far = to_slot_menu()
    far.cfg = config(waitlist_after=timedelta(hours=1))  # the slots are tomorrow
    far.patient("#2")
    far.ris(BookingConfirmed("K7M2QX")).says("K7M2QX", "Reply W", "earlier time").ends("booked")
    near = to_slot_menu()
    near.cfg = config(waitlist_after=timedelta(days=3))
    near.patient("#2")
    near.ris(BookingConfirmed("K7M2QX")).says("K7M2QX").ends("booked")
    assert "Reply W" not in near.texts[0].text
    assert slots(1)  # the playbook's slots start the next day


def test_the_first_to_join_is_offered_first_and_each_patient_once() -> None:
    waiting = [_candidate(3), _candidate(1), _candidate(2)]
    order = []
    offered: list[int] = []
    while chosen := next_candidate(SLOT, waiting, offered_before=offered, now=NOW, hold=HOLD):
        order.append(chosen.entry_id)
        offered.append(chosen.entry_id)  # NO or the hold ran out: the next one
    assert order == [1, 2, 3]


def test_who_is_never_offered_the_slot() -> None:
    never = [
        _candidate(1, appointment_start=SLOT.slot_start),  # not later than the freed slot
        _candidate(2, location_id="L2"),
        _candidate(3, modality="MR"),
        _candidate(4, consent=ConsentStatus.REVOKED),
        _candidate(5, consent=ConsentStatus.UNKNOWN),
        _candidate(6, phone_has_live_offer=True),  # a YES must name one slot
        _candidate(7, phone_busy=True),  # a live conversation owns the replies
    ]
    assert next_candidate(SLOT, never, offered_before=[], now=NOW, hold=HOLD) is None
    ok = _candidate(8)
    assert next_candidate(SLOT, [*never, ok], offered_before=[], now=NOW, hold=HOLD) == ok
    # A slot that starts before a hold could end is offered to nobody.
    soon = Vacancy(NOW + HOLD, "L1", "CR")
    assert next_candidate(soon, [ok], offered_before=[], now=NOW, hold=HOLD) is None


@given(
    st.lists(
        st.tuples(st.integers(0, 1000), st.booleans(), st.booleans()),
        min_size=0,
        max_size=12,
        unique_by=lambda t: t[0],
    ),
    st.sets(st.integers(0, 1000)),
)
def test_the_pick_is_the_earliest_joined_of_those_who_may_be_offered(
    rows: list[tuple[int, bool, bool]], before: set[int]
) -> None:
    waiting = [
        _candidate(
            n,
            joined_at=NOW - timedelta(minutes=(n * 7919) % 1000),
            phone_has_live_offer=live,
            phone_busy=busy,
        )
        for n, live, busy in rows
    ]
    chosen = next_candidate(SLOT, waiting, offered_before=before, now=NOW, hold=HOLD)
    fitting = [
        c
        for c in waiting
        if c.entry_id not in before and not c.phone_has_live_offer and not c.phone_busy
    ]
    if not fitting:
        assert chosen is None
    else:
        assert chosen is not None and chosen.entry_id not in before
        assert chosen.joined_at == min(c.joined_at for c in fitting)


def test_every_waitlist_text_is_one_segment_and_says_what_to_reply() -> None:
    booked = Booked("MR", NOW + timedelta(days=9))
    offer = offer_text(SLOT, CFG)
    assert "earlier time" in offer.text and "YES" in offer.text and "NO" in offer.text
    texts = [
        offer,
        *toggle_commands(joined=True, booked=booked, cfg=CFG),
        *toggle_commands(joined=False, booked=booked, cfg=CFG),
        *outcome_commands(Outcome.KEPT, booked=booked, cfg=CFG),
        *outcome_commands(Outcome.GONE, booked=booked, cfg=CFG),
        *outcome_commands(Outcome.TAKEN, booked=booked, cfg=CFG, code="K7M2QX"),
    ]
    bodies = [t.text for t in texts if isinstance(t, SendText)]
    assert len(bodies) == 6
    for body in bodies:
        assert segment_info(body).segments == 1, body
        assert "cancel" not in body.lower()
    assert "W again" in bodies[1] and "just taken" in bodies[4] and "K7M2QX" in bodies[5]
