"""Shadow mode's comparison of two engines' answers: kinds of mismatch, and properties of the comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from channels import Location, Slot
from radsched.beside.shadow import (
    KINDS,
    Mismatch,
    compare_errors,
    compare_locations,
    compare_slots,
)

T0 = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
DTWN = Location("DTWN", "Downtown Imaging", "100 Main St", ("CT",))
NRTH = Location("NRTH", "North Campus Radiology", "2200 North Ave", ("CT",))


def slot(minutes: int, loc: str = "DTWN", duration: int = 30, sid: str = "") -> Slot:
    return Slot(sid or f"{loc}-{minutes}", loc, "CT", T0 + timedelta(minutes=minutes), duration)


def test_same_answers_agree_whatever_the_ids() -> None:
    assert compare_locations("CT", [DTWN, NRTH], [NRTH, DTWN]) == []
    here = [slot(0), slot(30), slot(60)]
    theirs = [slot(0, sid="q1"), slot(30, sid="q2"), slot(60, sid="q3")]  # QIE's own slot ids
    assert compare_slots(here, theirs) == []
    # Case and spacing of a name are presentation only.
    assert compare_locations("CT", [DTWN], [Location("DTWN", "DOWNTOWN  imaging", "", ())]) == []


def test_each_kind_of_location_mismatch() -> None:
    renamed = Location("NRTH", "North Campus (closed)", "", ("CT",))
    west = Location("WEST", "Westside", "", ("CT",))
    got = compare_locations("CT", [DTWN, NRTH], [renamed, west])
    assert [(m.kind, m.location_id) for m in got] == [
        ("location_only_here", "DTWN"),
        ("location_name_differs", "NRTH"),
        ("location_only_shadow", "WEST"),
    ]
    assert all(m.call == "locations" and m.modality == "CT" for m in got)


def test_one_slot_different() -> None:
    here = [slot(0), slot(30), slot(60)]
    theirs = [slot(0, sid="q1"), slot(60, sid="q3")]
    assert compare_slots(here, theirs) == [
        Mismatch(
            "slot_only_here",
            "available-slots",
            "CT",
            "DTWN",
            T0 + timedelta(minutes=30),
            here_id="DTWN-30",
        ),
    ]
    (only,) = compare_slots(theirs, here)
    assert only.kind == "slot_only_shadow" and only.shadow_id == "DTWN-30"


def test_a_different_length_is_its_own_kind() -> None:
    (got,) = compare_slots([slot(0, duration=30)], [slot(0, duration=15, sid="q1")])
    assert got.kind == "slot_duration_differs"
    assert (got.here_id, got.shadow_id, got.detail) == ("DTWN-0", "q1", "30 vs 15 min")


def test_a_capped_list_is_compared_only_as_far_as_both_go() -> None:
    here = [slot(m) for m in range(0, 600, 30)]  # 20 slots
    theirs = [slot(m, sid=f"q{m}") for m in range(0, 300, 30)]  # the same calendar, cut at 10
    assert compare_slots(here, theirs) == []
    # ... but an engine that lists nothing at all disagrees on every slot.
    assert {m.kind for m in compare_slots(here, [])} == {"slot_only_here"}
    assert len(compare_slots(here, [])) == 20


def test_errors() -> None:
    assert compare_errors("locations", "CT", "", here_error=None, shadow_error="ris_timeout") == [
        Mismatch("shadow_failed", "locations", "CT", detail="ris_timeout")
    ]
    (got,) = compare_errors(
        "available-slots", "CT", "DTWN", here_error="ris_error", shadow_error=None
    )
    assert got.kind == "here_failed" and got.location_id == "DTWN"
    assert compare_errors("locations", "CT", "", here_error="x", shadow_error="y") == []


def test_every_kind_is_documented_in_the_migration() -> None:
    from pathlib import Path

    sql = (Path(__file__).resolve().parents[2] / "sql" / "0011_shadow.sql").read_text()
    for kind in KINDS:
        assert f"'{kind}'" in sql


slots_strategy = st.lists(
    st.builds(
        slot,
        st.integers(min_value=0, max_value=40).map(lambda n: n * 15),
        st.sampled_from(["DTWN", "NRTH"]),
        st.sampled_from([15, 30]),
    ),
    max_size=25,
)
MIRROR = {
    "slot_only_here": "slot_only_shadow",
    "slot_only_shadow": "slot_only_here",
    "slot_duration_differs": "slot_duration_differs",
}


@given(slots_strategy)
def test_an_answer_agrees_with_itself(slots: list[Slot]) -> None:
    assert compare_slots(slots, list(reversed(slots))) == []


@given(slots_strategy, slots_strategy)
def test_swapping_the_sides_mirrors_the_kinds(a: list[Slot], b: list[Slot]) -> None:
    forward = sorted((MIRROR[m.kind], m.slot_start, m.location_id) for m in compare_slots(a, b))
    backward = sorted((m.kind, m.slot_start, m.location_id) for m in compare_slots(b, a))
    assert forward == backward


@given(slots_strategy, slots_strategy)
def test_mismatches_name_only_ids_and_calendar_facts(a: list[Slot], b: list[Slot]) -> None:
    for m in compare_slots(a, b):
        assert m.kind in KINDS
        assert m.slot_start is not None and m.location_id in ("DTWN", "NRTH")


def test_two_scanners_at_one_start() -> None:
    here = [slot(0, sid="CT1-0900"), slot(0, sid="CT2-0900")]
    (got,) = compare_slots(here, [slot(0, sid="q1")])
    assert got.kind == "slot_only_here" and got.here_id == "CT2-0900"
