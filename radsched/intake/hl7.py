"""ORM^O01 from the RIS: the handler registered on the inbound router.

AA means the order, its conversation and its first text are committed. AE (never accepted, the
sender must fix the order): unreadable order, no usable mobile number, modality missing or not a
DICOM code. AR (try again) is the router's answer to anything unexpected. ORC-1 = CA cancels, when it
comes from the order's sender (MSH-3^MSH-4); from another sender it is refused with AR.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping

from channels import AckCode, Dialect, FieldPath, Message, OrderRef, ParseError, short_control_id
from channels.changes import ORDER_CANCEL_CONTROLS
from radsched.inbound.router import AckDecision, InboundContext, Refused, Rejected
from radsched.intake.choice import choose_phone, resolve_modality
from radsched.intake.service import OrderIntake
from radsched.storage.pg import Connection

log = logging.getLogger("radsched.intake.hl7")

__all__ = ["ORDER_KEY", "OrmHandler"]

ORDER_KEY = "order"
"""``InboundContext.once`` key of the message's parsed order (``Dialect.parse_order``)."""

# ORC-1 values that carry a new order; status updates (SC), holds and the like change nothing here.
_LANGUAGE = FieldPath("PID", 15)  # primary language (CE): "SPA^Spanish^ISO639", "es", …
_NEW = frozenset({"NW", "XO"})  # XO (changed order) of an order we never saw starts one


class OrmHandler:
    def __init__(
        self,
        intake: OrderIntake,
        dialect: Dialect,
        procedure_modalities: Mapping[str, str],
        wake: Callable[[], None],
    ) -> None:
        self._intake = intake
        self._dialect = dialect
        self._mapping = procedure_modalities
        self._wake = wake

    async def __call__(self, conn: Connection, msg: Message, ctx: InboundContext) -> AckDecision:
        try:
            order = ctx.once(ORDER_KEY, lambda: self._dialect.parse_order(msg))
        except ParseError as exc:
            self._intake.metrics.order("", "rejected_unreadable")
            raise Rejected(
                exc.reason, error_code=exc.hl7_error_code, location=exc.location
            ) from None
        extra = {
            "control_id": short_control_id(order.control_id),
            "order_control": order.order_control,
        }
        sender = f"{msg.sending_application}^{msg.sending_facility}"
        if order.is_cancel or order.order_control in ORDER_CANCEL_CONTROLS:
            outcome = await self._intake.cancel(
                conn, order.order_id, ctx.correlation_id, sender=sender
            )
            if outcome == "not_sender":
                # Before the appointment follower: nothing is cancelled, no S15, no text.
                raise Refused(
                    "cancel_sender",
                    "cancel refused: not the sender of the order (MSH-3^MSH-4)",
                )
            ctx.after_commit.append(lambda: self._intake.metrics.order(order.modality, "cancelled"))
            log.info("order cancel received", extra={**extra, "known": outcome == "cancelled"})
            return AckDecision(
                AckCode.AA,
                "" if outcome == "cancelled" else "order not known here; nothing to cancel",
            )
        if order.order_control not in _NEW:
            log.info("order message without a new order; nothing to do", extra=extra)
            return AckDecision(AckCode.AA, f"order control {order.order_control} not acted on")
        modality = resolve_modality(order.modality, order.procedure_code, self._mapping)
        if modality is None:
            self._intake.metrics.order(order.modality, "rejected_modality")
            what = "missing" if not order.modality else "not a DICOM modality code"
            raise Rejected(
                f"modality (OBR-24) {what} and procedure code not mapped in [procedure_modalities]",
                error_code="103",
                location="OBR-24",
            )
        phone = choose_phone(order.phones)
        if phone is None:
            self._intake.metrics.order(modality, "rejected_no_mobile")
            raise Rejected("no usable mobile number in PID-13", error_code="101", location="PID-13")
        ref = dataclasses.replace(OrderRef.from_order(order), modality=modality)
        decision = await self._intake.accept(
            conn,
            ref,
            phone=phone,
            facility=order.facility,
            source="mllp",
            correlation_id=ctx.correlation_id,
            language=msg.value(_LANGUAGE) or None,
            sender=sender,
        )
        ctx.after_commit.append(self._intake.count(decision))
        ctx.after_commit.append(self._wake)
        log.info("order received", extra={**extra, "modality": modality, "status": decision.status})
        return AckDecision(AckCode.AA)
