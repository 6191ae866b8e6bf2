"""The HL7 parsers: any bytes either parse or raise ParseError, and a NAK can always be built.

For every input:

* ``channels.parse`` returns a message or raises ``ParseError`` (nothing else);
* the readers on top (``read_ack``, ``parse_order``, ``parse_siu``) raise only channel errors;
* ``build_nak(input, reason)`` always gives an AR acknowledgement that our own parser reads back,
  with the reason in it: every malformed message can be NAKed with a reason.
"""

from __future__ import annotations

import contextlib
import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from channels import AckCode, ChannelError, ParseError, Party, build_nak, parse, read_ack
    from channels.orders import parse_order
    from channels.siu import parse_siu

ME = Party("RADSCHED", "RADSCHED")


def test_one_input(data: bytes) -> None:
    try:
        msg = parse(data)
    except ParseError as exc:
        reason = exc.reason
        assert reason.strip(), "a ParseError must say why"
    else:
        reason = "fuzz"
        for reader in (read_ack, parse_order, parse_siu):
            with contextlib.suppress(ChannelError):
                reader(msg)
    nak = build_nak(data, reason, sender=ME)
    ack = read_ack(parse(nak.payload))
    assert ack.code is AckCode.AR and ack.text.strip(), nak.payload


def main(argv: list[str]) -> None:
    from fuzz._harness import run

    run(test_one_input, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
