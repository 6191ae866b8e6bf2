"""The inbound router's refusal path, in process: every frame is answered with a reason.

The router runs for real, with no handlers registered, so every input is either unparseable (a NAK
built from the raw bytes) or a message of a type we do not take (an AR built from the message):
the whole path a stranger on the MLLP port reaches before anything touches the database. Every
answer must be one HL7 acknowledgement, negative, with a reason, that our parser reads back. The
stored path (database, handlers) is fuzzed end to end by tests/security/test_inbound_fuzz.py.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from channels import AckCode, Party, parse, read_ack
    from radsched.hl7metrics import HL7Metrics
    from radsched.inbound.router import InboundRouter

from prometheus_client import CollectorRegistry

logging.disable(
    logging.CRITICAL
)  # every input is refused; a warning each would drown libFuzzer's output
LOOP = asyncio.new_event_loop()
ROUTER = InboundRouter(
    db=Any,  # type: ignore[arg-type]  # never reached: with no handlers every message is refused
    me=Party("RADSCHED", "RADSCHED"),
    metrics=HL7Metrics(CollectorRegistry()),
    tz=UTC,
    clock=lambda: datetime(2026, 6, 1, tzinfo=UTC),
)


def test_one_input(data: bytes) -> None:
    payload = data.replace(b"\x0b", b"?").replace(b"\x1c", b"?")  # one frame's content
    reply = LOOP.run_until_complete(ROUTER.handle_frame(payload, None))
    if reply is None:
        # Only an enhanced-mode message that asked for no accept acknowledgement gets silence.
        msg = parse(payload)
        assert msg.accept_ack_type or msg.application_ack_type, payload
        return
    ack = read_ack(parse(reply))
    assert ack.code in (AckCode.AR, AckCode.CR), reply
    assert ack.text.strip(), reply


def main(argv: list[str]) -> None:
    from fuzz._harness import run

    run(test_one_input, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
