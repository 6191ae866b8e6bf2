"""Slot queries that repeat are written from a template (channels/dialects/querytemplate.py): the bytes
are always the ones a field-by-field build writes, and a build that uses the control id or the time in
any other way is never templated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels import get_dialect, parse
from channels.dialects.base import Dialect
from channels.dialects.querytemplate import Build, QueryTemplates
from tests.channels.samples import DIALECT_NAMES, TZ, WINDOW, requester

# Site settings that change how the query is written: no offsets, another charset, a moved value.
OVERRIDES: dict[str, dict[str, object]] = {
    "ch10-2.5.1": {"timestamps_with_offset": False, "slot_query.location_id": "AIL-3.4"},
    "qie-2.3": {"charset": "8859/1", "query_limit": 7},
}


class Fixed:
    """What the dialect reads per query, set by the test: the control id and the time."""

    def __init__(self) -> None:
        self.control_id = "Q000001"
        self.now = datetime(2025, 1, 14, 9, 0, tzinfo=TZ)


def _pair(name: str, overrides: dict[str, object] | None = None) -> tuple[Dialect, Dialect, Fixed]:
    """A dialect with templates, one that builds every query field by field, and their shared inputs."""
    fixed = Fixed()

    def make() -> Dialect:
        return get_dialect(
            name,
            overrides,
            tz=TZ,
            clock=lambda: fixed.now,
            control_ids=lambda: fixed.control_id,
        )

    templated, full = make(), make()
    full.query_templates = QueryTemplates(str, size=0)
    return templated, full, fixed


def test_a_repeated_question_is_written_from_its_template_with_its_own_ids_and_time(
    dialect_name: str,
) -> None:
    us, full, fixed = _pair(dialect_name)
    first = us.build_slot_query("DTWN", "CT", *WINDOW)
    fixed.control_id, fixed.now = "Q000002ABCDEF1234567", fixed.now + timedelta(seconds=61)
    second = us.build_slot_query("DTWN", "CT", *WINDOW)
    assert us.query_templates.hits == 2  # learnt on the first, so both came from it
    assert second.control_id == "Q000002ABCDEF1234567"
    assert second.payload == full.build_slot_query("DTWN", "CT", *WINDOW).payload
    msg = parse(second.payload)
    assert msg.control_id == "Q000002ABCDEF1234567"
    msh, qrd = msg.first("MSH"), msg.first("QRD")
    assert msh is not None and qrd is not None
    assert msh.get(7) == qrd.get(1) == "20250114090101-0500"
    assert qrd.get(4) == "DEF1234567"  # QRD-4: the control id's last ten characters
    assert first.payload != second.payload


def test_another_question_gets_its_own_template(dialect_name: str) -> None:
    us, full, _ = _pair(dialect_name)
    later = (WINDOW[0] + timedelta(days=7), WINDOW[1] + timedelta(days=7))
    for location, modality, window, limit in [
        ("DTWN", "CT", WINDOW, None),
        ("NRTH", "CT", WINDOW, None),
        ("DTWN", "MR", WINDOW, None),
        ("DTWN", "CT", later, None),
        ("DTWN", "CT", WINDOW, 5),
    ]:
        ours = us.build_slot_query(location, modality, *window, limit=limit)
        assert (
            ours.payload == full.build_slot_query(location, modality, *window, limit=limit).payload
        )


def test_a_control_id_or_location_that_needs_escaping_is_built_field_by_field(
    dialect_name: str,
) -> None:
    us, full, fixed = _pair(dialect_name)
    us.build_slot_query("DTWN", "CT", *WINDOW)
    fixed.control_id = "Q^00|0003"
    odd = us.build_slot_query("DTWN", "CT", *WINDOW)
    assert odd.payload == full.build_slot_query("DTWN", "CT", *WINDOW).payload
    assert b"Q\\S\\00\\F\\0003" in odd.payload
    assert us.query_templates.hits == 1  # the first query only
    fixed.control_id = "Q000004"
    named = us.build_slot_query("D^TWN", "CT", *WINDOW)  # a template of its own, escaped inside
    assert named.payload == full.build_slot_query("D^TWN", "CT", *WINDOW).payload


def _build_with(use: str) -> Build:
    """A query builder that uses the control id or the time the way ``use`` says."""

    def build(control_id: str, now: datetime) -> bytes:
        derived = {
            "prefix": control_id[:6],
            "date": f"{now:%Y%m%d}",
            "lower": control_id.lower(),
            "none": "",
        }[use]
        return (
            f"MSH|^~\\&|A|B|C|D|{now:%Y%m%d%H%M%S}||QRY^Q01|{control_id}|P|2.3\r"
            f"QRD|{now:%Y%m%d%H%M%S}|D|I|{control_id[-10:]}|||50^RD|ALL|X|{derived}\r"
        ).encode()

    return build


def test_a_build_that_uses_the_id_or_time_another_way_is_never_templated() -> None:
    for use in ("prefix", "date", "lower"):
        templates = QueryTemplates(lambda t: f"{t:%Y%m%d%H%M%S}")
        build = _build_with(use)
        for n, now in enumerate(
            [datetime(2025, 1, 14, 9, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)]
        ):
            cid = f"RS{n}A77F00B12C34D56E78"
            assert templates.build("question", cid, now, build) == build(cid, now)
        assert templates.hits == 0, use
    plain = QueryTemplates(lambda t: f"{t:%Y%m%d%H%M%S}")
    build = _build_with("none")
    now = datetime(2025, 1, 14, 9, tzinfo=UTC)
    assert plain.build("question", "ZZ1", now, build) == build("ZZ1", now)
    assert plain.hits == 1


def test_the_oldest_question_makes_room() -> None:
    us = requester("qie-2.3")
    us.query_templates = QueryTemplates(us._ts, size=2)
    days = [WINDOW[0] + timedelta(days=n) for n in range(3)]
    for day in days:
        us.build_slot_query("DTWN", "CT", day, day + timedelta(days=1))
    assert us.query_templates.hits == 3
    assert len(us.query_templates._templates) == 2


_text = st.text(alphabet=st.sampled_from("AZaz09-_ .^|&~\\\u00e9\u4e2d\r"), min_size=1, max_size=10)
_ids = st.one_of(
    st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=24),
    st.text(alphabet=st.sampled_from("AZ09^|&~\\ \u00e9"), min_size=1, max_size=12),
)
_moments = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2040, 1, 1),
    timezones=st.just(TZ),
    allow_imaginary=False,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(DIALECT_NAMES),
    site=st.booleans(),
    questions=st.lists(
        st.tuples(_text, _text, _moments, st.integers(1, 14), st.none() | st.integers(1, 99)),
        min_size=1,
        max_size=3,
    ),
    calls=st.lists(
        st.tuples(st.integers(0, 2), _ids, _moments),
        min_size=1,
        max_size=6,
    ),
)
def test_a_templated_query_is_always_the_bytes_of_a_full_build(
    name: str,
    site: bool,
    questions: list[tuple[str, str, datetime, int, int | None]],
    calls: list[tuple[int, str, datetime]],
) -> None:
    us, full, fixed = _pair(name, OVERRIDES[name] if site else None)
    for index, control_id, now in calls:
        location, modality, start, days, limit = questions[index % len(questions)]
        fixed.control_id, fixed.now = control_id, now
        end = start + timedelta(days=days)
        ours = us.build_slot_query(location, modality, start, end, limit=limit)
        theirs = full.build_slot_query(location, modality, start, end, limit=limit)
        assert ours == theirs
