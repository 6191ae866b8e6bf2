"""Order intake shared by MLLP (ORM^O01) and ``POST /api/orders``: store, then start texting.

Everything happens on the caller's connection, inside the transaction that also records the
ORM's ACK (or answers the HTTP request): the sealed order, its conversation, the first text in the
SMS outbox and the audit rows commit together, before anyone is told "accepted".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from channels import OrderRef
from radsched.modality import ModalityControl
from radsched.sms.engine import SmsEngine
from radsched.sms.engine_metrics import EngineMetrics
from radsched.storage.orders import OrderSource, OrderStore
from radsched.storage.pg import Connection

log = logging.getLogger("radsched.intake")

__all__ = ["Decision", "OrderIntake"]

Status = Literal["accepted", "duplicate", "deferred_to_phone"]
CancelOutcome = Literal["cancelled", "unknown", "not_sender"]


@dataclass(frozen=True, slots=True)
class Decision:
    status: Status
    outcome: str
    """``radsched_orders_total`` outcome label."""
    modality: str


class OrderIntake:
    def __init__(
        self,
        *,
        orders: OrderStore,
        engine: SmsEngine,
        modalities: ModalityControl,
        metrics: EngineMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._orders = orders
        self._engine = engine
        self.modalities = modalities
        self.metrics = metrics
        self._clock = clock

    async def accept(
        self,
        conn: Connection,
        order: OrderRef,
        *,
        phone: str,
        facility: str | None,
        source: OrderSource,
        correlation_id: str,
        language: str | None = None,
        sender: str | None = None,
    ) -> Decision:
        """Store ``order`` (modality already resolved) and start its conversation.

        ``language`` is what the order says about the patient's language (PID-15, e.g. ``SPA``);
        the texts use it when templates exist for it. ``sender`` (MSH-3^MSH-4, orders over MLLP) is
        the only sender whose cancel is honoured later.
        """
        stored = await self._orders.insert(
            conn,
            order,
            source=source,
            facility=facility or None,
            phone=phone,
            correlation_id=correlation_id,
            received_at=self._clock(),
            # Optimistic: a hand-over to staff in the same transaction overwrites it.
            state="texting",
            sender=sender,
        )
        if stored is None:
            # Same order id again (a resend with a new control id, or the JSON webhook retried):
            # the first one's conversation stands; never a second text.
            return Decision("duplicate", "duplicate", order.modality)
        enabled = await self.modalities.enabled(conn, order.modality)
        started = await self._engine.start_order(
            conn,
            stored,
            phone=phone,
            modality_enabled=enabled,
            correlation_id=correlation_id,
            language=language,
        )
        return Decision(started.status, started.outcome, order.modality)

    async def cancel(
        self, conn: Connection, order_id: str, correlation_id: str, *, sender: str
    ) -> CancelOutcome:
        """ORC-1 = CA: end the conversation, drop its unsent texts, mark the order cancelled.

        Only from the order's own sender (MSH-3^MSH-4): from anyone else nothing changes and the
        answer is ``"not_sender"``. An order stored without a sender (``POST /api/orders``, or
        received before migration 0013) is cancelled by any sender, as before.
        """
        key = self._orders.key(order_id)
        # The sender never changes once stored, so this read needs no lock; the locks below are
        # taken in the order they always were (conversation, then order).
        ordered_by = await self._orders.sender_of(conn, key)
        if ordered_by is not None and ordered_by != sender:
            return "not_sender"
        found = await self._engine.cancel_order(conn, key, correlation_id)
        stored = await self._orders.get_by_key(conn, key, for_update=True)
        if stored is None:
            return "cancelled" if found else "unknown"
        await self._orders.set_state(conn, key, "cancelled", now=self._clock(), purge_phi=True)
        return "cancelled"

    def count(self, decision: Decision) -> Callable[[], None]:
        """An after-commit callback: a rolled-back order must not be counted."""
        return lambda: self.metrics.order(decision.modality, decision.outcome)
