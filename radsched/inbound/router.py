"""Inbound HL7 over MLLP: parse, de-duplicate, hand to the registered handler, commit, then ACK.

The order of operations is the whole point of this module:

1. A frame that cannot be parsed gets an AR NAK saying why; the connection stays open.
2. A message type or version we do not handle gets AR (HL7 table 0357 codes 200/201/203).
3. Sender (MSH-3^MSH-4) + MSH-10 seen before → the ACK we gave the first time, and nothing else happens.
4. Otherwise the handler runs inside a database transaction, the ACK is recorded in ``inbound_messages``
   in the same transaction, the transaction commits, and only then is the ACK returned to the socket.
   AA therefore means "durably stored". A handler that raises :class:`Rejected` (content we will never
   accept) has its writes rolled back and the message is answered AE — and recorded, so a resend gets
   the same AE. A handler that raises :class:`Refused` (a sender we do not act for: RELAY_SENDERS,
   a cancel from another sender than the order's) has its writes rolled back and is answered AR with
   the reason, recorded nowhere but the log and ``radsched_hl7_refused_total``. Any other failure
   (database down) answers AR "resend later" and records nothing.

In enhanced acknowledgement mode (MSH-15 or MSH-16 set) the same outcomes are sent as accept
acknowledgements CA/CE/CR when MSH-15 asks for one (AL/SU/ER); since a handler's work is complete at
commit, that one answer stands for both. When only MSH-16 asks (MSH-15 NE, MSH-16 AL or empty), the
answer is the application acknowledgement AA/AE/AR; when neither asks, nothing is sent.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TypeVar, cast

from channels import (
    AckCode,
    Message,
    ParseError,
    Party,
    build_ack,
    build_nak,
    oversized_field,
    parse,
    short_control_id,
)
from channels.ack import (
    header_refusal,
    is_enhanced_mode,
    wants_accept_ack,
    wants_application_ack,
)
from mllp import FramingError, PeerInfo
from radsched.hl7metrics import HL7Metrics
from radsched.logs import correlated
from radsched.storage import inbound_messages
from radsched.storage.db import Database
from radsched.storage.pg import Connection

log = logging.getLogger("radsched.inbound")

T = TypeVar("T")

_ENHANCED = {AckCode.AA: AckCode.CA, AckCode.AE: AckCode.CE, AckCode.AR: AckCode.CR}


class Rejected(Exception):
    """Raised by a handler for content we will never accept (answered AE with ``reason``).

    ``reason`` goes back to the sender in MSA-3/ERR, so it must not quote patient data.
    """

    def __init__(self, reason: str, *, error_code: str = "207", location: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_code = error_code
        self.location = location


class Refused(Exception):
    """Raised by a handler for a sender that may not do what the message asks (answered AR).

    Not content the sender must fix but a sender we do not act for: an SIU relay from a sender
    outside ``RELAY_SENDERS``, a cancel from another sender than the order's. ``metric`` labels
    ``radsched_hl7_refused_total{reason}``; ``reason`` goes back in MSA-3/ERR (no patient data).
    The handler's writes are rolled back and nothing is recorded: a resend is judged again, so it is
    refused the same way until the operator lists the sender, and accepted after that.
    """

    def __init__(self, metric: str, reason: str, *, error_code: str = "207") -> None:
        super().__init__(reason)
        self.metric = metric
        self.reason = reason
        self.error_code = error_code


@dataclass(frozen=True, slots=True)
class AckDecision:
    """What a handler decided. ``text`` (MSA-3) must not carry PHI."""

    code: AckCode = AckCode.AA
    text: str = ""


@dataclass(slots=True)
class InboundContext:
    correlation_id: str
    received_at: datetime
    peer: PeerInfo | None
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    _derived: dict[str, object] = field(default_factory=dict)

    def once(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` the first time ``key`` is asked for while handling this message, then the
        same result: the handlers wrapped around one message type (e.g. the order intake and the
        appointment record following it) read the message once, not once each."""
        if key not in self._derived:
            self._derived[key] = compute()
        return cast(T, self._derived[key])


InboundHandler = Callable[[Connection, Message, InboundContext], Awaitable[AckDecision]]


class _Duplicate(Exception):
    """Control flow: roll back and answer with the stored ACK."""

    def __init__(self, ack: bytes) -> None:
        super().__init__("duplicate")
        self.ack = ack


class InboundRouter:
    """Routes inbound messages by ``TYPE^TRIGGER`` to handlers registered by the components."""

    def __init__(
        self,
        db: Database,
        me: Party,
        metrics: HL7Metrics,
        *,
        tz: tzinfo,
        clock: Callable[[], datetime],
        max_field_bytes: int = 64 * 1024,
    ) -> None:
        self._db = db
        self._max_field_bytes = max_field_bytes
        self._me = me
        self._metrics = metrics
        self._tz = tz
        self._clock = clock
        self._handlers: dict[str, InboundHandler] = {}

    def register(self, message_type: str, handler: InboundHandler) -> None:
        """``message_type`` is ``"ORM^O01"``-style; registering twice is a programming error."""
        key = message_type.upper()
        if key in self._handlers:
            raise ValueError(f"a handler for {key} is already registered")
        self._handlers[key] = handler

    def wrap(
        self, message_type: str, wrapper: Callable[[InboundHandler | None], InboundHandler]
    ) -> None:
        """Replace the handler of ``message_type`` with ``wrapper(handler)`` (``wrapper(None)`` when none
        is registered yet): a later component adds work to the same transaction, e.g. the appointment
        record following an SIU the EMR component relays."""
        key = message_type.upper()
        self._handlers[key] = wrapper(self._handlers.get(key))

    @property
    def message_types(self) -> tuple[str, ...]:
        return tuple(sorted(self._handlers))

    # -- the mllp server calls these -------------------------------------------------------------

    async def handle_frame(self, frame: bytes, peer: PeerInfo | None) -> bytes | None:
        correlation_id = secrets.token_hex(8)
        with correlated(correlation_id):
            return await self._handle(frame, peer, correlation_id)

    def on_framing_error(self, error: FramingError, peer: PeerInfo) -> bytes | None:
        """Answer a framing problem (e.g. an oversized frame) with a NAK and keep the connection."""
        log.warning(
            "framing error",
            extra={"peer": str(peer), "kind": str(error.kind), "detail": error.detail},
        )
        reason = f"MLLP framing error: {error.kind}" + (
            f" ({error.detail})" if error.detail else ""
        )
        return self._nak(b"", reason, "100")

    # -- internals -------------------------------------------------------------------------------

    def _nak(self, frame: bytes, reason: str, error_code: str) -> bytes:
        return build_nak(
            frame, reason, sender=self._me, error_code=error_code, clock=self._clock, tz=self._tz
        ).payload

    def _ack(
        self, msg: Message, code: AckCode, text: str = "", error_code: str = "", location: str = ""
    ) -> bytes:
        # Enhanced mode: the commit code when MSH-15 asks for an accept ACK for this outcome; when only
        # MSH-16 asks (e.g. MSH-15 NE, MSH-16 empty = AL), the application code, since our work is
        # complete at commit.
        if is_enhanced_mode(msg) and wants_accept_ack(msg, code.is_success):
            code = _ENHANCED.get(code, code)
        return build_ack(
            msg,
            code,
            text=text,
            error_code=error_code,
            error_location=location,
            sender=self._me,
            clock=self._clock,
            tz=self._tz,
        ).payload

    async def _handle(
        self, frame: bytes, peer: PeerInfo | None, correlation_id: str
    ) -> bytes | None:
        try:
            msg = parse(frame)
        except ParseError as exc:
            self._metrics.inbound.labels("unparseable", "AR").inc()
            log.warning("unparseable message", extra={"peer": str(peer), "reason": exc.reason})
            return self._nak(frame, exc.reason, exc.hl7_error_code)

        key = f"{msg.message_type}^{msg.trigger}"
        extra = {
            "message_type": key,
            "control_id": short_control_id(msg.control_id),
            "peer": str(peer),
        }
        big = oversized_field(frame, self._max_field_bytes)
        if big is not None:
            # Before any handler or storage: one field must not carry megabytes into the database.
            self._metrics.inbound.labels(
                key if key in self._handlers else "unsupported", "AE"
            ).inc()
            reason = f"{big} is {big.size} bytes; the limit is {self._max_field_bytes} (MLLP_MAX_FIELD_BYTES)"
            log.warning("message refused", extra={**extra, "reason": reason})
            return self._reply(msg, AckCode.AE, reason, "102", success=False, location=str(big))
        refusal = self._refuse(msg, key)
        if refusal is not None:
            reason, error_code = refusal
            self._metrics.inbound.labels(
                key if key in self._handlers else "unsupported", "AR"
            ).inc()
            log.warning("message refused", extra={**extra, "reason": reason})
            if header_refusal(msg) is not None:
                # Answering in the sender's own header would echo an unusable MSH-12 or an empty
                # MSH-10 (whatever else is wrong); the NAK builder falls back to a version and a
                # control id receivers accept.
                return self._nak(frame, reason, error_code)
            return self._reply(msg, AckCode.AR, reason, error_code, success=False)

        sender = f"{msg.sending_application}^{msg.sending_facility}"
        ctx = InboundContext(correlation_id, self._clock(), peer)
        try:
            ack, code = await self._process(msg, key, sender, ctx)
        except _Duplicate as dup:
            self._metrics.duplicates.labels(key).inc()
            log.info("duplicate message; original ACK repeated", extra=extra)
            return dup.ack
        except Refused as refused:
            # Rolled back, not recorded (see Refused); no after-commit work runs.
            self._metrics.refused.labels(refused.metric).inc()
            self._metrics.inbound.labels(key, "AR").inc()
            log.warning(
                "message refused for its sender",
                extra={**extra, "sender": sender, "refusal": refused.metric},
            )
            return self._reply(msg, AckCode.AR, refused.reason, refused.error_code, success=False)
        except Exception:
            # Nothing was committed: tell the sender to try again rather than claim we have it.
            log.exception("inbound processing failed; answered AR", extra=extra)
            self._metrics.inbound.labels(key, "AR").inc()
            return self._reply(
                msg,
                AckCode.AR,
                "temporary failure, message not stored; resend later",
                "207",
                success=False,
            )
        self._metrics.inbound.labels(key, str(code)).inc()
        log.info("message processed", extra={**extra, "ack_code": str(code)})
        for callback in ctx.after_commit:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed", extra=extra)
        return ack

    def _refuse(self, msg: Message, key: str) -> tuple[str, str] | None:
        # Versions 2.1-2.8.2, an MSH-10 to correlate with (channels.ack.header_refusal).
        refusal = header_refusal(msg)
        if refusal is not None and refusal[1] == "203":
            return refusal
        if key not in self._handlers:
            known = {k.split("^")[0] for k in self._handlers}
            code = "201" if msg.message_type in known else "200"
            return (
                f"unsupported message type {key}; accepted: {', '.join(self.message_types)}",
                code,
            )
        return refusal

    def _reply(
        self,
        msg: Message,
        code: AckCode,
        text: str,
        error_code: str,
        *,
        success: bool,
        location: str = "",
    ) -> bytes | None:
        if not _answered(msg, success):
            return None  # MSH-15/16 NE/SU/ER said not to answer this outcome
        return self._ack(msg, code, text, error_code, location)

    async def _claim(
        self,
        conn: Connection,
        *,
        msg: Message,
        key: str,
        sender: str,
        ctx: InboundContext,
        code: AckCode,
        ack: bytes,
    ) -> None:
        """Serialise one sender + control id across connections and daemons, look it up, and
        record the message with ``ack`` when it is new.

        A resend racing the original waits on the lock and, once the original commits, is answered
        with the stored ACK: a handler never runs twice for one message.
        """
        stored = await inbound_messages.claim(
            conn,
            sender=sender,
            control_id=msg.control_id,
            message_type=key,
            received_at=ctx.received_at,
            ack_code=str(code),
            ack=ack,
            correlation_id=ctx.correlation_id,
        )
        if stored is not None:
            raise _Duplicate(stored)

    async def _process(
        self, msg: Message, key: str, sender: str, ctx: InboundContext
    ) -> tuple[bytes | None, AckCode]:
        handler = self._handlers[key]
        rejection: Rejected | None = None
        # Recorded with the message at the start (one round trip, not two): the ACK of a plain
        # accept, which nearly every message gets. Another decision overwrites it before the
        # commit; an exception rolls it back with the handler's writes.
        accepted = self._ack(msg, AckCode.AA)
        try:
            async with self._db.transaction(f"inbound {key}") as conn:
                await self._claim(
                    conn, msg=msg, key=key, sender=sender, ctx=ctx, code=AckCode.AA, ack=accepted
                )
                outcome = await handler(conn, msg, ctx)
                code = outcome.code
                if code is AckCode.AA and not outcome.text:
                    ack = accepted
                else:
                    ack = self._ack(msg, code, outcome.text)
                    await inbound_messages.settle(
                        conn, sender=sender, control_id=msg.control_id, ack_code=str(code), ack=ack
                    )
        except Rejected as rej:
            rejection = rej  # the transaction rolled back every write the handler made
        if rejection is not None:
            # Remember the AE so that a resend gets the same answer, in a transaction of its own.
            ctx.after_commit.clear()
            code = AckCode.AE
            ack = self._ack(msg, code, rejection.reason, rejection.error_code)
            async with self._db.transaction(f"inbound {key} rejected") as conn:
                await self._claim(
                    conn, msg=msg, key=key, sender=sender, ctx=ctx, code=code, ack=ack
                )
        if not _answered(msg, code.is_success):
            return None, code
        return ack, code


def _answered(msg: Message, success: bool) -> bool:
    """Original mode always; enhanced mode when MSH-15 or MSH-16 asks for an ACK of this outcome."""
    return wants_accept_ack(msg, success) or wants_application_ack(msg, success)
