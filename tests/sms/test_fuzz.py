"""Random event sequences: the step function is total and every invariant holds throughout."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radsched.conversation import (
    BookingConfirmed,
    BookingRejected,
    ConsentStatus,
    Event,
    InboundText,
    LocationsLoaded,
    MenuLocation,
    OrderCancelled,
    OrderReceived,
    RejectReason,
    RisDown,
    SlotsLoaded,
    Tick,
)
from tests.sms.playbook import Playbook, config, slots

BODIES = st.one_of(
    st.sampled_from(["yes", "no", "1", "2", "3", "9", "more", "help", "stop", "start", "?", ""]),
    st.text(max_size=30),
)
NAMES = st.text(min_size=1, max_size=40)
EVENTS: st.SearchStrategy[Event] = st.one_of(
    st.builds(
        OrderReceived,
        st.sampled_from(["CR", "MR", "ZZ"]),
        st.booleans(),
        st.sampled_from(list(ConsentStatus)),
        st.booleans(),
        st.booleans(),
        st.sampled_from([None, "en", "es", "xx"]),
    ),
    st.builds(InboundText, BODIES, st.text(alphabet="SM0123", min_size=1, max_size=4)),
    st.builds(
        LocationsLoaded,
        st.lists(
            st.builds(MenuLocation, st.sampled_from(["L1", "L2", "L3"]), NAMES), max_size=12
        ).map(tuple),
    ),
    st.builds(SlotsLoaded, st.integers(0, 5).map(slots), st.booleans()),
    st.builds(BookingConfirmed, st.text(alphabet="ABC234", min_size=1, max_size=12)),
    st.builds(BookingRejected, st.sampled_from(list(RejectReason))),
    st.just(RisDown()),
    st.just(OrderCancelled()),
    st.just(Tick()),
)
STEPS = st.lists(st.tuples(st.integers(0, 26 * 60), EVENTS), max_size=25)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS, st.booleans())
def test_any_sequence_keeps_the_invariants(steps: list[tuple[int, Event]], es: bool) -> None:
    play = Playbook(config(max_menu_repeats=3))
    play.order(language="es" if es else None)
    for minutes, event in steps:
        # The playbook checks the invariants after every step (see tests/sms/playbook.py).
        play.advance(timedelta(minutes=minutes)).feed(event)
