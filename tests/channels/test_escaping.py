"""Escaping properties, and free text through whole messages (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from channels import Delimiters, LineBreaks, SegmentBuilder, escape, parse, unescape
from channels.message import encode_message

DELIMS = st.sampled_from(
    [Delimiters(), Delimiters("#", "$", "*", "!", "@"), Delimiters("|", "^", "~", "\\", "&")]
)
ANY_TEXT = st.text(max_size=80)
FT_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)


@given(ANY_TEXT, DELIMS)
def test_escape_round_trips_exactly(text: str, delims: Delimiters) -> None:
    assert unescape(escape(text, delims), delims, "utf-8") == text


@given(ANY_TEXT, DELIMS)
def test_escaped_text_has_no_structure_characters(text: str, delims: Delimiters) -> None:
    escaped = escape(text, delims)
    for ch in (
        delims.field,
        delims.component,
        delims.repetition,
        delims.subcomponent,
        "\r",
        "\n",
        "\x0b",
        "\x1c",
    ):
        assert ch not in escaped
    # Every escape character opens a pair: the sequences never run into each other.
    assert escaped.count(delims.escape) % 2 == 0


@given(ANY_TEXT)
def test_formatted_line_breaks(text: str) -> None:
    escaped = escape(text, line_breaks=LineBreaks.FORMATTED)
    assert "\r" not in escaped and "\n" not in escaped
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert unescape(escaped, charset="utf-8") == expected


@given(st.text(alphabet="abc\\FSTREX.br0123456789", max_size=30))
def test_unescape_never_raises(text: str) -> None:
    unescape(text)


def test_known_sequences() -> None:
    assert escape("a|b^c&d~e\\f") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    assert escape("x\r\ny") == "x\\X0D\\\\X0A\\y"
    assert escape("x\r\ny", line_breaks=LineBreaks.FORMATTED) == "x\\.br\\y"
    assert unescape("a\\X0D0A\\b") == "a\r\nb"
    assert unescape("\\H\\bold\\N\\ \\.sp2\\x") == "bold \nx"
    assert unescape("keep \\Zlocal\\ and \\unterminated") == "keep \\Zlocal\\ and \\unterminated"


def _one_field_message(value: str, charset: str, formatted: bool) -> bytes:
    nte = SegmentBuilder("NTE", "1", None, value, "after")
    if formatted:
        nte.formatted.add(3)
    msh = {
        3: "A",
        4: "B",
        5: "C",
        6: "D",
        7: "20250101",
        9: ("SIU", "S12"),
        10: "X1",
        11: "P",
        12: "2.3",
    }
    return encode_message(msh, [nte, SegmentBuilder("ZZZ", "tail")], charset=charset)


@settings(max_examples=200)
@given(FT_TEXT)
def test_free_text_round_trips_through_a_message(text: str) -> None:
    payload = _one_field_message(text, "UNICODE UTF-8", formatted=False)
    msg = parse(payload)
    assert [s.name for s in msg.segments] == ["MSH", "NTE", "ZZZ"]
    nte = msg.require("NTE")
    assert nte.field_count == 4  # the value never adds or removes fields
    assert nte.get(3) == text
    assert nte.get(4) == "after"
    assert payload.count(b"\r") == 3


@settings(max_examples=100)
@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=60))
def test_latin1_text_round_trips_in_8859_1(text: str) -> None:
    assert parse(_one_field_message(text, "8859/1", formatted=False)).require("NTE").get(3) == text


@given(FT_TEXT)
def test_ascii_link_never_breaks_structure(text: str) -> None:
    """With no MSH-18 (ASCII), non-ASCII is transliterated, but the message stays well-formed."""
    payload = _one_field_message(text, "", formatted=True)
    payload.decode("ascii")
    msg = parse(payload)
    assert [s.name for s in msg.segments] == ["MSH", "NTE", "ZZZ"]
    assert msg.require("NTE").get(4) == "after"
