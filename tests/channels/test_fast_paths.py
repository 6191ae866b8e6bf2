"""Issue 16's fast paths give exactly what the straightforward code gives.

- ``parse`` (delimiters cached per feed, segments split into fields only when read) against the parser
  it replaced (``reference_parse``), on fixtures, spliced fixtures, random bytes and generated messages;
- ``build_ack`` (header parts cached per sender, the common AA written without the checks) against its
  general path, and a cached answer against a fresh one;
- ``Segment.get`` of a plain alphanumeric value against splitting the field in full.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels import AckCode, ParseError, Party, build_ack, fixed_clock, parse
from channels import ack as ack_module
from channels.escaping import STANDARD, unescape
from channels.ids import random_control_ids, sequential_control_ids
from channels.message import Message, Segment
from tests.channels.reference_parse import reference_parse
from tests.channels.test_fuzz import _mutations

CLOCK = fixed_clock(datetime(2025, 1, 14, 10, 15, 1, tzinfo=UTC))


def _outcome(parser: object, data: bytes) -> object:
    try:
        msg: Message = parser(data)  # type: ignore[operator]
    except ParseError as exc:
        return ("error", exc.reason, exc.location, exc.hl7_error_code)
    return (
        [(s.name, s.fields) for s in msg.segments],
        msg.delimiters,
        msg.charset,
        msg.codec,
        msg.decode_replaced,
        msg.control_id,
        msg.encoding_characters,
    )


_text = st.text(alphabet="AZaz09 |^~\\&#.-/\r\n\t\x00éü", max_size=12)
_name = st.sampled_from(
    ["PID", "PV1", "ORC", "OBR", "NTE", "ZDS", "MSH", "pid", "P1", "OBX", "OBX2", "MSHX"]
)


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    """MSH with generated delimiters, fields and MSH-18, then segments in any of the separators."""
    fs = draw(st.sampled_from("|#!"))
    enc = draw(st.sampled_from(["^~\\&", "^~\\&#", "^~\\", "^", "", "^~\\&\xe9", "^^~\\", "$~\\&"]))
    fields = draw(st.lists(_text, max_size=20))
    if draw(st.booleans()) and len(fields) >= 16:
        fields[15] = draw(st.sampled_from(["", "UNICODE UTF-8", "8859/1", "ASCII", "ISO IR87"]))
    header = "MSH" + fs + enc + fs + fs.join(fields)
    body = [draw(_name) + fs + fs.join(draw(st.lists(_text, max_size=6))) for _ in range(3)]
    sep = draw(st.sampled_from(["\r", "\n", "\r\n", "\r\r", "\r\n\r"]))
    text = sep.join([header, *body]) + draw(st.sampled_from(["", "\r", "\x00", " \n"]))
    codec = draw(st.sampled_from(["utf-8", "latin-1"]))
    return draw(st.sampled_from(["", "\x0b", "\ufeff"])).encode("utf-8") + text.encode(
        codec, errors="replace"
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(_messages(), _mutations()))
def test_parse_matches_the_reference_parser(data: bytes) -> None:
    assert _outcome(parse, data) == _outcome(reference_parse, data)


@st.composite
def _inbound(draw: st.DrawFn) -> bytes:
    enc = draw(st.sampled_from(["^~\\&", "^~\\&#"]))
    party = st.sampled_from(["RIS", "A" * 30, "R\\F\\IS", "RIS^X^ISO", ""])
    app, fac, rapp, rfac = (draw(party) for _ in range(4))
    trigger = draw(st.sampled_from(["O01", "S12", "O~1", ""]))
    cid = draw(st.sampled_from(["RIS000123", "C" * 250, ""]))
    pid = draw(st.sampled_from(["P", "D^T", "X"]))
    version = draw(st.sampled_from(["2.1", "2.3", "2.4", "2.5.1", "2.7", "2.8", "9", ""]))
    charset = draw(st.sampled_from(["", "UNICODE UTF-8", "8859/1", "BOGUS"]))
    msh = [app, fac, rapp, rfac, "20250114101500", "", f"ORM^{trigger}", cid, pid, version]
    msh += ["", "", "", "", "", charset]
    return f"MSH|{enc}|{'|'.join(msh)}\rPID|1||MRN1\r".encode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=_inbound(),
    code=st.sampled_from(list(AckCode)),
    text=st.sampled_from(["", "no usable mobile number"]),
    error_code=st.sampled_from(["", "101"]),
    sender=st.sampled_from([None, Party("RADSCHED", "RADSCHED"), Party("B" * 30, "X^Y")]),
)
def test_build_ack_matches_its_general_path(
    data: bytes, code: AckCode, text: str, error_code: str, sender: Party | None
) -> None:
    msg = parse(data)

    def ack() -> bytes:
        return build_ack(
            msg,
            code,
            text=text,
            error_code=error_code,
            sender=sender,
            clock=CLOCK,
            control_ids=sequential_control_ids("T"),
        ).payload

    cached = ack()  # fills the per-sender cache (or hits it)
    general = ack_module._finish(
        ack_module._prepare_inbound(msg, sender),
        code,
        text=text,
        error_code=error_code,
        location=ack_module._NO_LOCATION,
        ts=ack_module._timestamps.text(CLOCK(), UTC, True),
        control_id="T000001",
        acked=msg.msh.raw(10),
    ).payload
    ack_module._prepared.clear()
    assert cached == general == ack()


def test_an_ack_on_the_system_clock_carries_the_current_second() -> None:
    before = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    ack = build_ack(parse(b"MSH|^~\\&|A|B|C|D|x||ORM^O01|1|P|2.3\r"), AckCode.AA)
    after = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    stamp = ack.payload.split(b"|")[6].decode()
    assert stamp[:14] in (before, after) and stamp[14:] == "+0000"


def test_control_ids_are_twenty_hex_digits_and_never_repeat() -> None:
    ids = [random_control_ids() for _ in range(3000)]  # several batches of random bytes
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 20 and all(c in "0123456789ABCDEF" for c in i) for i in ids)


def _get_in_full(seg: Segment, field: int, component: int, sub: int, rep: int) -> str:
    """``Segment.get`` the long way: split repetitions, components and subcomponents, then unescape."""
    if seg.name == "MSH" and field <= 2:
        return seg.raw(field)
    subs = seg.subcomponents(field, component, rep, unescaped=False)
    return unescape(subs[sub - 1], STANDARD, "latin-1") if sub <= len(subs) else ""


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.text(alphabet="AZaz09é中^~&|\\ .-", max_size=8), min_size=1, max_size=4),
    field=st.integers(0, 6),
    component=st.integers(1, 3),
    sub=st.integers(1, 3),
    rep=st.integers(1, 3),
)
def test_reading_one_value_matches_splitting_it_in_full(
    values: list[str], field: int, component: int, sub: int, rep: int
) -> None:
    # A plain alphanumeric value takes the short way (Segment.get); every other value the long way.
    seg = Segment("ZZZ", ("ZZZ", *values), STANDARD, "latin-1")
    assert seg.get(field, component, sub, rep) == _get_in_full(seg, field, component, sub, rep)
