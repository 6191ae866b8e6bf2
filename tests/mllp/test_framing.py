"""The sans-IO framer: no sockets, so the properties can be checked exhaustively."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mllp import (
    CLOSED,
    NEED_DATA,
    CommitAck,
    CommitNak,
    Frame,
    FrameDecoder,
    FramingError,
    FramingErrorKind,
    encode_frame,
)
from mllp.framing import COMMIT_ACK_BLOCK, COMMIT_NAK_BLOCK

# Payload bytes as MLLP allows them: > 0x1F plus CR (HL7 segment separator).
payloads = st.binary(max_size=300).map(lambda b: bytes(c if c > 0x1F else 0x0D for c in b))
filler = st.sampled_from([b"", b"\r", b"\n", b"\x00", b"\r\n"])
# Random bytes rarely hit the interesting cases, so half the inputs are built from framing bytes.
hostile = st.one_of(
    st.binary(max_size=2000),
    st.lists(st.sampled_from(b"\x0b\x1c\r\n\x00\x06\x15AAAAAAAAAAAAAAAAAAAA"), max_size=600).map(
        bytes
    ),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def decode(chunks: list[bytes], **kwargs: object) -> list[object]:
    decoder = FrameDecoder(**kwargs)  # type: ignore[arg-type]
    events: list[object] = []
    for chunk in chunks:
        if chunk:
            events += decoder.feed(chunk)
    events += decoder.feed(b"")
    return events


def normal(events: list[object]) -> list[object]:
    # How much of an oversized frame was seen before giving up depends on the read sizes; the kind
    # of the error does not.
    return [
        ("oversize",) if isinstance(e, FramingError) and e.kind is FramingErrorKind.OVERSIZE else e
        for e in events
    ]


@given(st.lists(st.tuples(filler, payloads)), st.lists(st.integers(min_value=0)))
@settings(deadline=None)  # a loaded CI box must not turn a slow example into a failure
def test_any_split_of_a_valid_stream_yields_the_same_frames(
    parts: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(fill + encode_frame(p) for fill, p in parts)
    expected = [Frame(p) for _, p in parts]
    assert decode([stream]) == expected
    assert decode([bytes([b]) for b in stream]) == expected
    assert decode(split(stream, cuts)) == expected


@given(hostile, st.lists(st.integers(min_value=0)), st.booleans())
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_give_events_never_exceptions(
    data: bytes, cuts: list[int], lenient: bool
) -> None:
    limit = 64
    decoder = FrameDecoder(max_frame_size=limit, lenient=lenient)
    events = []
    for chunk in split(data, cuts):
        if chunk:
            events += decoder.feed(chunk)
            assert decoder.buffered <= limit
    events += decoder.feed(b"")
    assert decoder.next_event() is CLOSED
    for event in events:
        assert isinstance(event, Frame | FramingError | CommitAck | CommitNak)
        if isinstance(event, Frame):
            assert len(event.payload) <= limit
    # Chunking never changes the verdict.
    assert normal(events) == normal(decode([data], max_frame_size=limit, lenient=lenient))


@given(st.binary(max_size=200), payloads)
@settings(deadline=None)
def test_junk_before_a_frame_is_skipped_and_the_frame_recovered(
    junk: bytes, payload: bytes
) -> None:
    junk = junk.replace(b"\x0b", b"")  # a start block in the junk would open a (bogus) frame
    decoder = FrameDecoder()
    assert decoder.feed(junk + encode_frame(payload)) == [Frame(payload)]
    assert decoder.junk_bytes == len(junk) - sum(junk.count(f) for f in (b"\0", b"\r", b"\n"))


def test_h11_style_api() -> None:
    decoder = FrameDecoder()
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"\x0bMSH|1\r\x1c\r\x0bMSH|2")
    assert decoder.next_event() == Frame(b"MSH|1\r")
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"\r\x1c\r")
    assert decoder.next_event() == Frame(b"MSH|2\r")
    decoder.receive_data(b"")
    assert decoder.next_event() is CLOSED


def test_filler_between_frames_is_not_junk() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\r\n\x00" + encode_frame(b"A") + b"\n\r\x00" + encode_frame(b"B")) == [
        Frame(b"A"),
        Frame(b"B"),
    ]
    assert decoder.junk_bytes == 0


@pytest.mark.parametrize("chunks", [[b"\x0bABC\x1c\x0bD\x1c\r"], [b"\x0bABC\x1c", b"\x0bD\x1c\r"]])
def test_end_block_without_cr_is_an_error_when_strict(chunks: list[bytes]) -> None:
    assert decode(chunks) == [FramingError(FramingErrorKind.BAD_END_BLOCK, 4), Frame(b"D")]


def test_end_block_without_cr_ends_the_frame_at_once_when_lenient() -> None:
    decoder = FrameDecoder(lenient=True)
    # No byte after EB: the frame must be delivered now, the sender is waiting for the reply.
    assert decoder.feed(b"\x0bABC\x1c") == [Frame(b"ABC")]
    assert decoder.feed(b"\r\x0bD\x1c") == [Frame(b"D")]


def test_start_block_inside_a_frame_restarts_it() -> None:
    assert decode([b"\x0bhalf a mess\x0bMSH|ok\x1c\r"]) == [
        FramingError(FramingErrorKind.UNEXPECTED_START_BLOCK, 11),
        Frame(b"MSH|ok"),
    ]


def test_eof_inside_a_frame_is_truncated() -> None:
    assert decode([b"\x0bMSH|partial"]) == [FramingError(FramingErrorKind.TRUNCATED, 11)]


def test_oversize_is_reported_early_and_the_rest_is_not_buffered() -> None:
    decoder = FrameDecoder(max_frame_size=1000)
    events = decoder.feed(b"\x0b" + b"x" * 1001)
    assert [type(e) for e in events] == [FramingError]
    assert events[0].kind is FramingErrorKind.OVERSIZE  # type: ignore[union-attr]
    for _ in range(100):  # 100 kB more of the same frame: nothing is kept
        assert decoder.feed(b"y" * 1000) == []
        assert decoder.buffered == 0
    # Its end, then a good frame: the decoder is back in step.
    assert decoder.feed(b"\x1c\r" + encode_frame(b"next")) == [Frame(b"next")]


def test_frame_of_exactly_max_size_passes() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    assert decoder.feed(encode_frame(b"0123456789")) == [Frame(b"0123456789")]


def test_release2_commit_blocks() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(COMMIT_ACK_BLOCK + COMMIT_NAK_BLOCK) == [CommitAck(), CommitNak()]


def test_encode_refuses_framing_bytes_in_the_payload() -> None:
    with pytest.raises(ValueError, match="0x0B or 0x1C"):
        encode_frame(b"bad\x1cpayload")
    assert encode_frame(b"MSH|x\r") == b"\x0bMSH|x\r\x1c\r"


def test_cost_is_linear_in_frame_size() -> None:
    # A 4 MiB frame fed in 4 KiB pieces: a quadratic scanner would take minutes here.
    import time

    decoder = FrameDecoder()
    body = b"A" * (4 * 1024 * 1024)
    stream = encode_frame(body)
    start = time.perf_counter()
    events = []
    for i in range(0, len(stream), 4096):
        events += decoder.feed(stream[i : i + 4096])
    assert events == [Frame(body)]
    assert time.perf_counter() - start < 2.0
