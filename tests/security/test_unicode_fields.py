"""Any Unicode value, on any link, reads back at the peer as what we meant (issue 11, item 1).

"What we meant" is the value itself where the link's character set carries it, else its per-value
transliteration (``channels.charset.fit``). Checked for the three MSH-18 values we write (empty, as
in SIU and the whole ``qie-2.3`` link; 8859/1; UTF-8 as in ``ch10-2.5.1``), for standard and unusual
delimiters, with our reader and (standard delimiters) python-hl7 as an independent one.

``make test`` runs a bounded, deterministic slice; ``make fuzz`` sets ``SECURITY_FUZZ_EXAMPLES``.
"""

from __future__ import annotations

import os
import unicodedata

import hl7
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels import Delimiters, SegmentBuilder, parse
from channels.charset import codec_for, fit
from channels.message import encode_message

EXAMPLES = int(os.environ.get("SECURITY_FUZZ_EXAMPLES", "300"))
DETERMINISTIC = "SECURITY_FUZZ_EXAMPLES" not in os.environ
CHARSETS = ("", "8859/1", "UNICODE UTF-8")
DELIMS = (Delimiters(), Delimiters("#", "$", "*", "!", "@"), Delimiters("'", '"', "-", ".", "("))
HEADER = {3: "RADSCHED", 4: "RADSCHED", 5: "EMR", 6: "EMR", 7: "20260101120000", 9: ("SIU", "S12")}
HEADER |= {10: "CID1", 11: "P", 12: "2.3"}


def _decomposes_to_structure(ch: str) -> bool:
    """NFKD (accents dropped) yields ASCII punctuation or a control: a delimiter in disguise."""
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    return base != ch and any(c.isascii() and not c.isalnum() and c != " " for c in base)


# Every such code point (fullwidth ｜＾～＼＆, small forms ﹨﹠, ⁄ ″ ...), computed, not hand-listed.
DISGUISED = [
    chr(cp) for cp in range(0x80, 0x30000) if _decomposes_to_structure(chr(cp)) and cp < 0xD800
] + [chr(cp) for cp in range(0xE000, 0x30000) if _decomposes_to_structure(chr(cp))]

LEAF = st.text(st.characters(), max_size=12) | st.text(
    st.sampled_from([*DISGUISED[:200], "|", "^", "~", "\\", "&", "\r", "\n", "a"]), max_size=8
)
FIELD = st.lists(st.lists(LEAF, min_size=1, max_size=3), min_size=1, max_size=3)


def roundtrip(fields: list[list[list[str]]], charset: str, delims: Delimiters) -> None:
    seg = SegmentBuilder("ZZZ")
    for number, comps in enumerate(fields, start=1):
        seg.field(number, tuple(tuple(subs) for subs in comps))
    end = len(fields) + 1
    seg.field(end, "END")  # a sentinel: any shifted field moves it
    payload = encode_message(HEADER, [seg], delims=delims, charset=charset)
    codec = codec_for(charset)
    msg = parse(payload)
    [zzz] = [s for s in msg.segments if s.name == "ZZZ"]
    assert zzz.field_count == end and zzz.get(end) == "END"
    for number, comps in enumerate(fields, start=1):
        for c, subs in enumerate(comps, start=1):
            for s, value in enumerate(subs, start=1):
                assert zzz.get(number, c, s) == fit(value, codec), (number, c, s)
    if delims == Delimiters():
        # python-hl7 splits the structure independently of our reader.
        theirs = hl7.parse(payload.decode(codec).replace("\n", "\r"))
        assert len(theirs.segment("ZZZ")) == end + 1
        assert str(theirs.segment("ZZZ")[end]) == "END"


@settings(
    max_examples=EXAMPLES,
    derandomize=DETERMINISTIC,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(FIELD, min_size=1, max_size=6),
    st.sampled_from(CHARSETS),
    st.sampled_from(DELIMS),
)
def test_any_unicode_value_reads_back_as_meant(
    fields: list[list[list[str]]], charset: str, delims: Delimiters
) -> None:
    roundtrip(fields, charset, delims)


def test_every_disguised_delimiter_stays_data() -> None:
    assert {"｜", "＾", "～", "＼", "＆", "﹨", "﹠"} <= set(DISGUISED)
    fields = [[["a" + ch + "b"]] for ch in DISGUISED]
    for charset in CHARSETS:
        for delims in DELIMS:
            roundtrip(fields, charset, delims)
