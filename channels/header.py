"""MSH construction shared by every builder, and the version rules that change MSH-9 and ERR."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import tzinfo

from .escaping import STANDARD, Delimiters
from .ids import Clock, ControlIdSource
from .message import FieldValue, Message, SegmentBuilder, encode_message
from .model import OutboundMessage, Party, RequestHeader
from .timestamps import format_ts


@functools.lru_cache(maxsize=64)
def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.5.1"`` -> ``(2, 5, 1)``; unreadable versions sort as 2.3 (the most tolerant form to answer in).

    Cached: every message built asks, and a site speaks one or two versions (bounded, as MSH-12 of
    inbound messages reaches it too)."""
    parts: list[int] = []
    for piece in version.strip().split("."):
        # isdigit() is true for "¹" and other non-ASCII digits that int() rejects.
        if not (piece.isascii() and piece.isdigit()):
            break
        parts.append(int(piece))
    return tuple(parts) if len(parts) >= 2 else (2, 3)


def message_type(version: str, msg_type: str, trigger: str, structure: str) -> tuple[str, ...]:
    """MSH-9 in the version's own form: 2 components up to 2.3.1, 3 (with the structure) from 2.4.

    2.3.1 allows an optional third component but many 2.3.1 receivers reject it, and HAPI also adds it only
    from 2.5; we add it from 2.4 where it is part of the MSG type.
    """
    if version_tuple(version) >= (2, 4):
        return (msg_type, trigger, structure)
    return (msg_type, trigger)


def build(
    *,
    sender: Party,
    receiver: Party,
    msg_type: str,
    trigger: str,
    structure: str,
    version: str,
    segments: Sequence[SegmentBuilder],
    clock: Clock,
    control_ids: ControlIdSource,
    tz: tzinfo,
    with_offset: bool = True,
    charset: str = "",
    delims: Delimiters = STANDARD,
    processing_id: str = "P",
    accept_ack: str = "",
    application_ack: str = "",
    control_id: str | None = None,
) -> OutboundMessage:
    """Build and encode one message; returns its control id with the bytes."""
    cid = control_id or control_ids()
    fields: dict[int, FieldValue] = {
        3: sender.application,
        4: sender.facility,
        5: receiver.application,
        6: receiver.facility,
        7: format_ts(clock(), tz, with_offset=with_offset),
        9: message_type(version, msg_type, trigger, structure),
        10: cid,
        11: processing_id,
        12: version,
    }
    if accept_ack:
        fields[15] = accept_ack
    if application_ack:
        fields[16] = application_ack
    payload = encode_message(fields, segments, delims=delims, charset=charset)
    return OutboundMessage(control_id=cid, payload=payload)


def request_header(msg: Message) -> RequestHeader:
    """Who sent ``msg`` (so a responder can swap the parties back)."""
    return RequestHeader(
        control_id=msg.control_id,
        sender=Party(msg.sending_application, msg.sending_facility),
        receiver=Party(msg.receiving_application, msg.receiving_facility),
        version=msg.version,
        trigger=msg.trigger,
        charset=msg.charset,
    )
