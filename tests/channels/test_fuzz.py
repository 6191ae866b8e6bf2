"""Any bytes fed to any parser raise ParseError (or a ControlIdMismatch/ResponseError for a readable reply)
or succeed — never another exception. The h11 fuzz invariant, with hypothesis."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels import (
    ControlIdMismatch,
    ParseError,
    ResponseError,
    build_nak,
    parse,
    parse_ack,
    parse_order,
    parse_siu,
)
from channels.model import Party
from tests.channels.samples import DIALECT_NAMES, FIXTURES, requester, responder

SEEDS = [p.read_bytes() for p in sorted(FIXTURES.rglob("*.hl7"))]
OK_ERRORS = (ParseError, ControlIdMismatch, ResponseError)


def _mutations() -> st.SearchStrategy[bytes]:
    """Random bytes, and fixtures with random bytes spliced in (which reach much deeper than noise)."""

    @st.composite
    def spliced(draw: st.DrawFn) -> bytes:
        seed = draw(st.sampled_from(SEEDS))
        cut = draw(st.integers(0, len(seed)))
        junk = draw(st.binary(max_size=12))
        drop = draw(st.integers(0, 8))
        return seed[:cut] + junk + seed[cut + drop :]

    prefixed = st.binary(max_size=200).map(lambda b: b"MSH|^~\\&|" + b)
    return st.one_of(st.binary(max_size=300), prefixed, spliced())


def _call(parser: Callable[[bytes, str], object], control_id: str, data: bytes) -> object:
    return parser(data, control_id)


def _parsers() -> list[tuple[str, Callable[[bytes], object]]]:
    out: list[tuple[str, Callable[[bytes], object]]] = [
        ("parse", parse),
        ("parse_order", parse_order),
        ("parse_siu", parse_siu),
        ("parse_ack", partial(_call, parse_ack, "X")),
    ]
    for name in DIALECT_NAMES:
        us, ris = requester(name), responder(name)
        out += [
            (f"{name} location_response", partial(_call, us.parse_location_response, "Q000001")),
            (f"{name} slot_response", partial(_call, us.parse_slot_response, "Q000002")),
            (f"{name} booking_response", partial(_call, us.parse_booking_response, "Q000003")),
            (f"{name} location_query", ris.parse_location_query),
            (f"{name} slot_query", ris.parse_slot_query),
            (f"{name} booking_request", ris.parse_booking_request),
            (f"{name} change_response", partial(_call, us.parse_change_response, "Q000001")),
            (f"{name} change_request", ris.parse_change_request),
            (f"{name} order", us.parse_order),
        ]
    return out


PARSERS = _parsers()


@pytest.mark.parametrize(("label", "parser"), PARSERS, ids=[p[0] for p in PARSERS])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutations())
def test_parsers_only_raise_channel_errors(
    label: str, parser: Callable[[bytes], object], data: bytes
) -> None:
    del label
    with contextlib.suppress(*OK_ERRORS):
        parser(data)


@settings(max_examples=200, deadline=None)
@given(data=_mutations())
def test_nak_for_anything_is_readable(data: bytes) -> None:
    nak = build_nak(data, "unreadable", sender=Party("RADSCHED", "RADSCHED"))
    msg = parse(nak.payload)
    assert msg.message_type == "ACK"
    assert msg.require("MSA").get(1) == "AR"
