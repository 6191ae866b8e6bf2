"""HL7 batches over MLLP (issue 15 item 3): one frame, several messages, one response batch.

A frame holding ``[FHS] {[BHS] {MSH...} [BTS]} [FTS]`` is split by :mod:`channels.batch` (several MSH
with no header are not a batch: the router refuses them, one message per frame); each message goes through the inbound router on its own, exactly as if it had
come in its own frame: de-duplicated, handled in its own transaction, committed before its ACK is
known. The answer is a response batch (BHS-12 = the sender's BHS-11) holding, per
``RADSCHED_MLLP_BATCH_ACK``:

* ``all`` (default): every message's acknowledgement;
* ``errors``: only the acknowledgements that are not AA/CA — HL7's "exception basis", where an empty
  response batch tells the sender every message was accepted.

Each message's own MSH-15/16 still decide whether it gets an acknowledgement (enhanced mode NE/NE:
none), so a batch whose every message asked for none gets no answer at all. Per-message ACK frames are
not sent: MLLP answers one frame with one frame, and a response batch is the standard's form for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from typing import Literal

from channels import ParseError, Party, build_nak, parse, read_ack
from channels.batch import build_batch_ack, is_batch, parse_batch
from mllp import PeerInfo

log = logging.getLogger("radsched.batches")

BatchAckMode = Literal["all", "errors"]
FrameHandler = Callable[[bytes, PeerInfo | None], Awaitable[bytes | None]]


class BatchListener:
    """Wraps the router's frame handler; single messages pass straight through."""

    def __init__(
        self,
        handle: FrameHandler,
        me: Party,
        *,
        mode: BatchAckMode = "all",
        tz: tzinfo,
        clock: Callable[[], datetime],
    ) -> None:
        self._handle = handle
        self._me = me
        self._mode = mode
        self._tz = tz
        self._clock = clock

    async def handle_frame(self, frame: bytes, peer: PeerInfo | None) -> bytes | None:
        if not is_batch(frame):
            return await self._handle(frame, peer)
        try:
            batch = parse_batch(frame)
        except ParseError as exc:
            log.warning("unreadable batch", extra={"peer": str(peer), "reason": exc.reason})
            return build_nak(
                frame,
                exc.reason,
                sender=self._me,
                error_code=exc.hl7_error_code,
                clock=self._clock,
                tz=self._tz,
            ).payload
        acks: list[bytes] = []
        answered = False
        for message in batch.messages:
            # One at a time, in order: each commits before the next starts (and before we answer).
            ack = await self._handle(message, peer)
            if ack is None:
                continue
            answered = True
            if self._mode == "all" or not _accepted(ack):
                acks.append(ack)
        log.info(
            "batch processed",
            extra={"peer": str(peer), "messages": len(batch.messages), "acks": len(acks)},
        )
        if not answered:
            return None
        return build_batch_ack(batch, acks, sender=self._me, clock=self._clock, tz=self._tz)


def _accepted(ack: bytes) -> bool:
    try:
        return read_ack(parse(ack)).code.is_success
    except ParseError:
        return False


__all__ = ["BatchAckMode", "BatchListener"]
