"""Character sets, timestamps, control ids, field paths, and the import boundary of the package."""

from __future__ import annotations

import ast
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

import channels
from channels import (
    FieldPath,
    ParseError,
    format_ts,
    parse_ts,
    random_control_ids,
    sequential_control_ids,
)
from channels.charset import codec_for, decode, encode, fit, transliterate
from channels.timestamps import parse_date

NY = ZoneInfo("America/New_York")


def test_decode_rules() -> None:
    assert decode(b"abc", "").codec == "ascii"
    assert decode("José".encode(), "").codec == "utf-8"  # empty MSH-18 but valid UTF-8
    tolerant = decode("José".encode("cp1252"), "")
    assert (tolerant.text, tolerant.codec, tolerant.replaced) == ("José", "cp1252", True)
    assert decode("José".encode("latin-1"), "8859/1").text == "José"
    assert decode("José".encode(), "UNICODE UTF-8").text == "José"
    assert decode(
        b"Jos\xe9", "UNICODE UTF-8"
    ).replaced  # declared UTF-8, bad byte: replaced, not raised
    assert decode("José".encode(), "ISO IR87").codec == "utf-8"  # unknown set: tolerant fallback


def test_encode_rules() -> None:
    assert encode("José", "UNICODE UTF-8") == "José".encode()
    assert encode("José", "8859/1") == b"Jos\xe9"
    # Per value, before escaping: the readable approximation, punctuation included.
    assert fit("José “Joe” ☃", "ascii") == 'Jose "Joe" ?'
    # A whole message (delimiters already placed): nothing may turn into punctuation (issue 11).
    assert encode("José “Joe” ☃ ｜", "") == b"Jose ?Joe? ? ?"
    assert (
        transliterate("Ærøskøbing", "ascii") == "?r?sk?bing"
    )  # no decomposition: "?" but never an error
    with pytest.raises(ValueError, match="unsupported"):
        codec_for("EBCDIC")


def test_format_ts() -> None:
    moment = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
    assert format_ts(moment, NY) == "20250701080000-0400"
    assert format_ts(moment, NY, with_offset=False) == "20250701080000"
    assert format_ts(moment) == "20250701120000+0000"
    assert (
        format_ts(datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))))
        == "20241231183000+0000"
    )
    with pytest.raises(ValueError, match="aware"):
        format_ts(datetime(2025, 1, 1))


def test_format_ts_tells_the_two_halves_of_a_fold_apart() -> None:
    # 01:30 on the night clocks go back happens twice in New York, an hour apart. The two
    # datetimes compare equal (same zone, fold ignored): a cache keyed on them alone would give
    # the second the first's text.
    first, second = (
        datetime(2025, 11, 2, 1, 30, tzinfo=NY),
        datetime(2025, 11, 2, 1, 30, fold=1, tzinfo=NY),
    )
    assert first == second
    assert format_ts(first, NY) == "20251102013000-0400"
    assert format_ts(second, NY) == "20251102013000-0500"
    assert format_ts(second, UTC) == "20251102063000+0000"
    assert format_ts(first, UTC) == "20251102053000+0000"


def _format_ts_uncached(moment: datetime, tz: ZoneInfo | timezone, with_offset: bool) -> str:
    """What format_ts wrote before it kept its answers (channels/timestamps.py)."""
    local = moment.astimezone(tz)
    text = local.strftime("%Y%m%d%H%M%S")  # years 1970-2100 here: no short-year padding question
    if with_offset:
        minutes = int((local.utcoffset() or timedelta(0)).total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        text += f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return text


@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, NY, ZoneInfo("Europe/London"), ZoneInfo("Asia/Kolkata")]),
    ),
    tz=st.sampled_from([UTC, NY, ZoneInfo("Australia/Lord_Howe"), timezone(timedelta(hours=-3))]),
    with_offset=st.booleans(),
)
def test_format_ts_answers_as_if_computed_afresh(
    moment: datetime, tz: ZoneInfo | timezone, with_offset: bool
) -> None:
    # Asked twice (the second answer comes from the cache), and in another zone in between.
    expected = _format_ts_uncached(moment, tz, with_offset)
    assert format_ts(moment, tz, with_offset=with_offset) == expected
    format_ts(moment.astimezone(UTC), NY)
    assert format_ts(moment, tz, with_offset=with_offset) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025", datetime(2025, 1, 1, tzinfo=NY)),
        ("202501151030", datetime(2025, 1, 15, 10, 30, tzinfo=NY)),
        ("20250115103015.1234", datetime(2025, 1, 15, 10, 30, 15, 123400, tzinfo=NY)),
        (
            "20250115103015-0600",
            datetime(2025, 1, 15, 10, 30, 15, tzinfo=timezone(timedelta(hours=-6))),
        ),
        (
            "20250115103015.5+0100",
            datetime(2025, 1, 15, 10, 30, 15, 500000, tzinfo=timezone(timedelta(hours=1))),
        ),
    ],
)
def test_parse_ts(text: str, expected: datetime) -> None:
    assert parse_ts(text, NY) == expected


@pytest.mark.parametrize(
    "text", ["", "2025-01-15", "20251315", "20250115250000", "20250115-2500", "abc"]
)
def test_parse_ts_rejects(text: str) -> None:
    with pytest.raises(ParseError):
        parse_ts(text)


def test_parse_date() -> None:
    assert parse_date("19800101") == date(1980, 1, 1)
    with pytest.raises(ParseError):
        parse_date("1980")


def test_control_ids() -> None:
    ids = {random_control_ids() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 20 for i in ids)
    seq = sequential_control_ids("T")
    assert [seq(), seq()] == ["T000001", "T000002"]


def test_field_paths() -> None:
    assert FieldPath.parse("AIL-3.4") == FieldPath("AIL", 3, 4)
    assert FieldPath.parse("PID-13(2).3") == FieldPath("PID", 13, 3, 1, 2)
    assert str(FieldPath.parse("PID-13(2).3")) == "PID-13(2).3"
    for bad in ("AIL3", "ail-3", "MSH-2", "AIL-0", "AIL-3.x"):
        with pytest.raises(ValueError):
            FieldPath.parse(bad)


def test_import_boundary() -> None:
    """channels never imports radsched/asyncpg/aiohttp, and at most one module imports the hl7 package."""
    root = Path(channels.__file__).parent
    hl7_importers = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"radsched", "asyncpg", "aiohttp", "hl7apy"}, (
                    f"{path.name} imports {name}"
                )
                if top == "hl7":
                    hl7_importers.append(path.name)
    assert len(set(hl7_importers)) <= 1
