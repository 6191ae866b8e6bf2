"""The fast value reader of the slot answers returns what Segment.get returns, position for position."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from channels import parse
from channels.dialects.leaves import Leaves, first_by_name
from channels.message import FieldPath

# Field text made of the characters that matter to splitting and unescaping, under two delimiter sets.
PIECES = st.sampled_from(
    ["A", "b1", " x ", "^", "~", "&", "\\", "\\F\\", "\\T\\", "\\X41\\", "", "é"]
)
FIELD = st.lists(PIECES, max_size=8).map("".join)
ENCODINGS = st.sampled_from(["^~\\&", "#*!$"])


def _message(encoding: str, fields: list[str]) -> bytes:
    # Translate the standard delimiters of the generated text into the message's own ones.
    table = str.maketrans("^~\\&", encoding)
    body = "|".join(f.translate(table) for f in fields)
    msh = f"MSH|{encoding}|A|B|C|D|20260101||SQR^S25|1|P|2.5.1\r"
    return (msh + "SCH|" + body + "\rAIS|1||" + body + "\r").encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(ENCODINGS, st.lists(FIELD, min_size=1, max_size=5))
def test_leaves_get_equals_segment_get(encoding: str, fields: list[str]) -> None:
    msg = parse(_message(encoding, fields))
    leaves = Leaves(msg)
    for seg in msg.segments:
        for field in range(0, len(seg.fields) + 2):
            for comp in (1, 2, 3):
                for sub in (1, 2):
                    for rep in (1, 2):
                        assert leaves.get(seg, field, comp, sub, rep) == seg.get(
                            field, comp, sub, rep
                        ), (seg.name, field, comp, sub, rep)


@settings(max_examples=100, deadline=None)
@given(ENCODINGS, st.lists(FIELD, min_size=1, max_size=5))
def test_leaves_at_equals_message_value_over_a_group(encoding: str, fields: list[str]) -> None:
    msg = parse(_message(encoding, fields))
    group = list(msg.segments[1:])
    first = first_by_name(group)
    leaves = Leaves(msg)
    for text in ("SCH-1", "SCH-2.2", "AIS-3(2).1.2", "AIS-4", "AIL-3.4", "MSH-9.2"):
        path = FieldPath.parse(text)
        assert leaves.at(first, path) == msg.value(path, group).strip()
    assert leaves.at(first, None) == ""
    assert leaves.get(None, 1) == ""
