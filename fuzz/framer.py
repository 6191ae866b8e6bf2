"""The MLLP framer: any bytes, split anywhere, give the same events and never buffer past the limit.

Invariants checked for every input (h11's fuzz/afl-server.py idea, with libFuzzer):

* ``FrameDecoder.feed`` never raises, whole or split at fuzzer-chosen points;
* the events are the same however the input was split;
* the partial-frame buffer never exceeds ``max_frame_size``;
* every frame that comes out re-encodes to a block that decodes to the same frame.
"""

from __future__ import annotations

import itertools
import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from mllp import Frame, FrameDecoder, encode_frame

LIMIT = 4096


def decode(chunks: list[bytes]) -> list[object]:
    decoder = FrameDecoder(max_frame_size=LIMIT)
    events: list[object] = []
    for chunk in chunks:
        if not chunk:
            continue  # feed(b"") means EOF
        events += decoder.feed(chunk)
        assert decoder.buffered <= LIMIT, decoder.buffered
    events += decoder.feed(b"")
    return events


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = fdp.ConsumeIntListInRange(fdp.ConsumeIntInRange(0, 8), 0, 1 << 16)
    body = fdp.ConsumeBytes(atheris.ALL_REMAINING)
    edges = [0, *sorted(c % (len(body) + 1) for c in cuts), len(body)]
    # Empty chunks left out: feed(b"") means EOF.
    chunks = [body[a:b] for a, b in itertools.pairwise(edges) if b > a]
    whole = decode([body])
    assert decode(chunks) == whole, "events depend on how the input was split"
    if body:
        assert decode([bytes([b]) for b in body[:512]]) == decode([body[:512]])
    for event in whole:
        if isinstance(event, Frame):
            assert decode([encode_frame(event.payload)]) == [event]


def main(argv: list[str]) -> None:
    from fuzz._harness import run

    run(test_one_input, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
