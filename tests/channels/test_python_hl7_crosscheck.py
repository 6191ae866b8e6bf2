"""Cross-check our HL7 reader against python-hl7, an independent parser.

channels/message.py is our own ER7 reader/writer (python-hl7's unescape drops ``\\.br\\`` and hex escapes,
which broke round-trip guarantees — see that module's docstring). This test keeps it honest: for every
fixture and every message our builders produce, python-hl7 must see the same segments, the same raw
fields, and — wherever python-hl7 can unescape a value — the same text.
"""

from __future__ import annotations

import re
from pathlib import Path

import hl7
import pytest

from channels import parse, split_messages
from channels.batch import messages_in
from tests.channels.make_fixtures import built_fixtures

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted(p for p in (ROOT / "fixtures").rglob("*.hl7") if p.parent.name != "negative")


def _messages() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = [(f"built:{k}", v) for k, v in sorted(built_fixtures().items())]
    for path in FIXTURES:
        data = path.read_bytes()
        # fixtures/interop/ has HL7 batches (FHS/BHS, or several MSH): compare the messages inside.
        parts = [m for chunk in split_messages(data) for m in messages_in(chunk)]
        for index, message in enumerate(parts):
            out.append((f"{path.relative_to(ROOT)}#{index}", message))
    return out


MESSAGES = _messages()


@pytest.mark.parametrize(("name", "payload"), MESSAGES, ids=[n for n, _ in MESSAGES])
def test_python_hl7_sees_the_same_message(name: str, payload: bytes) -> None:
    ours = parse(payload)
    # python-hl7 splits on CR only; our reader accepts LF-only files, so hand it the CR form.
    text = ours.text()
    theirs = hl7.parse(text)
    assert [str(s[0]) for s in theirs] == [s.name for s in ours.segments]
    for mine, other in zip(ours.segments, theirs, strict=True):
        raw_theirs = [str(f) for f in other]
        raw_mine = list(mine.fields)
        # python-hl7 keeps trailing empty fields that our reader may drop; compare what both have.
        while raw_theirs and raw_theirs[-1] == "":
            raw_theirs.pop()
        while raw_mine and raw_mine[-1] == "":
            raw_mine.pop()
        assert raw_mine == raw_theirs, f"{mine.name} differs"
        for number in range(1 if mine.name != "MSH" else 3, len(mine.fields)):
            raw = mine.fields[number]
            if not raw or re.search(r"\\(\.br|X[0-9A-Fa-f]|Z|H|N|C|M)", raw):
                continue  # escapes python-hl7 does not translate
            if ours.delimiters.repetition in raw:
                continue
            for c, component in enumerate(raw.split(ours.delimiters.component), start=1):
                if ours.delimiters.subcomponent in component:
                    continue
                assert mine.get(number, c) == theirs.unescape(component), (
                    f"{mine.name}-{number}.{c} unescapes differently"
                )
