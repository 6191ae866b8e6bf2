"""Issue 16's encode fast path (a plain ASCII leaf is written without ``fit``/``escape``) writes exactly
what the straightforward writer wrote (``reference_encode``), for any segment, delimiter set and codec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from channels import charset as _charset
from channels.escaping import STANDARD, Delimiters
from channels.message import SegmentBuilder, encode_message
from channels.timestamps import format_ts
from tests.channels.reference_encode import reference_encode

# Text that exercises every branch: delimiters of both sets below, the escape character, CR/LF/CRLF,
# other controls and DEL, accents (latin-1 but not ASCII), Greek/Cyrillic (some iso8859 sets only),
# a fullwidth vertical line (transliterates to "|"), smart quotes, emoji, and plain letters.
_ALPHABET = st.sampled_from(
    list("AZaz09 .-/:")
    + list("|^~\\&#!*%@")
    + ["\r", "\n", "\t", "\x00", "\x0b", "\x1c", "\x7f"]
    + ["é", "ß", "Ł", "Ω", "Ж", "\uff5c", "\u2019", "\u2014", "\u00a0", "😀"]
)
_LEAF = st.one_of(st.text(_ALPHABET, max_size=8), st.sampled_from(["", "CR", "20250115", "José"]))
_COMPONENT = st.one_of(_LEAF, st.tuples(_LEAF, _LEAF), st.lists(_LEAF, max_size=3).map(tuple))
_PLAIN_FIELD = st.one_of(_COMPONENT, st.lists(_COMPONENT, min_size=0, max_size=4).map(tuple))
_FIELD = st.one_of(_PLAIN_FIELD, st.lists(st.lists(_COMPONENT, max_size=3).map(tuple), max_size=3))
_DELIMS = st.sampled_from(
    [STANDARD, Delimiters.from_msh("#", "!*%@"), Delimiters.from_msh("|", "^~\\")]
)
_CODECS = st.sampled_from(
    ["", "ascii", "latin-1", "utf-8", *sorted(set(_charset._CODECS.values()))]
)


@st.composite
def _segments(draw: st.DrawFn) -> SegmentBuilder:
    name = draw(st.sampled_from(["NTE", "PID", "ZXY", "AIL", "OBX"]))
    seg = SegmentBuilder(name, *draw(st.lists(st.one_of(st.none(), _FIELD), max_size=6)))
    for number, value in draw(st.dictionaries(st.integers(1, 12), _FIELD, max_size=3)).items():
        seg.field(number, value)
    seg.formatted.update(draw(st.sets(st.integers(1, 12), max_size=3)))
    return seg


@settings(max_examples=1500, deadline=None)
@given(_segments(), _DELIMS, _CODECS)
def test_encode_matches_reference(seg: SegmentBuilder, delims: Delimiters, codec: str) -> None:
    assert seg.encode(delims, codec) == reference_encode(seg, delims, codec)


@settings(max_examples=300, deadline=None)
@given(_segments(), _DELIMS)
def test_encode_matches_reference_for_other_codecs(seg: SegmentBuilder, delims: Delimiters) -> None:
    # Codec hints outside MSH-18's table: one that carries ASCII in other bytes, and one that does not.
    for codec in ("utf-16", "cp1252", "cp037", "utf-7"):
        assert seg.encode(delims, codec) == reference_encode(seg, delims, codec)


def test_encode_unknown_codec_fails_as_before() -> None:
    seg = SegmentBuilder("NTE", "1", "plain")
    for encoder in (seg.encode, lambda d, c: reference_encode(seg, d, c)):
        try:
            encoder(STANDARD, "no-such-codec")
        except LookupError:
            continue
        raise AssertionError("an unknown codec must raise LookupError")


@settings(max_examples=300, deadline=None)
@given(st.lists(_segments(), max_size=4), _DELIMS, st.sampled_from(["", "8859/1", "UNICODE UTF-8"]))
def test_encode_message_matches_reference(
    segs: list[SegmentBuilder], delims: Delimiters, charset: str
) -> None:
    msh = {3: "RADSCHED", 4: ("FAC", "1.2", "ISO"), 7: "20250115101501", 9: ("SIU", "S12"), 10: "1"}
    codec = _charset.codec_for(charset)
    body = "".join(reference_encode(s, delims, codec) + "\r" for s in segs)
    head = SegmentBuilder("MSH")
    for number, value in msh.items():
        head.field(number, value)
    if charset:
        head.field(18, charset)
    fs = delims.field
    msh_text = reference_encode(head, delims, codec)[len("MSH" + fs + fs + fs) :]
    expected = f"MSH{fs}{delims.encoding_characters}{fs}{msh_text}\r{body}"
    assert encode_message(msh, segs, delims=delims, charset=charset) == _charset.encode(
        expected, charset
    )


_ZONES = [
    UTC,
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Kolkata"),
    timezone(timedelta(hours=-3)),
]


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(timezones=st.sampled_from(_ZONES)),
    st.sampled_from(_ZONES),
    st.booleans(),
)
def test_format_ts_matches_strftime(moment: datetime, tz: object, with_offset: bool) -> None:
    local = moment.astimezone(tz)  # type: ignore[arg-type]
    expected = local.strftime("%Y%m%d%H%M%S")
    if with_offset:
        minutes = int((local.utcoffset() or timedelta(0)).total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        expected += f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    assert format_ts(moment, tz, with_offset=with_offset) == expected  # type: ignore[arg-type]
