"""The order store: orders received from the RIS (MLLP) or the order webhook, PHI sealed at rest.

Every component that needs an order (the SMS engine texting about it, the REST facade booking it, the
SIU builder notifying EMRs of it) reads it through here, so the sealing format lives in one place.
Rows are found by ``order_key`` = HMAC(PHONE_HASH_KEY, "order:" + order id): the clear order id never
sits in an index, yet a cancel or a booking for the same order finds its row in one look-up. Beside it
``mrn_key`` = HMAC(PHONE_HASH_KEY, "mrn:" + order_key + ":" + MRN) outlives the sealed PHI, so a booking
can prove the caller knows the patient after the order has ended (:meth:`OrderStore.mrn_matches`).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import asyncpg

from channels import OrderRef, PatientName
from radsched.privacy import PhiBox, phone_hash

OrderSource = Literal["mllp", "api"]
OrderState = Literal["received", "texting", "deferred", "booked", "cancelled", "ended"]


def order_key(hash_key: bytes, order_id: str) -> str:
    return hmac.new(hash_key, b"order:" + order_id.encode(), hashlib.sha256).hexdigest()


def mrn_key(hash_key: bytes, order_key_value: str, mrn: str) -> str:
    """The order's MRN, keyed and bound to the order: equal MRNs of two orders do not match."""
    message = b"mrn:" + order_key_value.encode() + b":" + mrn.encode()
    return hmac.new(hash_key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredOrder:
    id: uuid.UUID
    order_key: str
    source: OrderSource
    modality: str
    facility: str | None
    state: OrderState
    received_at: datetime
    correlation_id: str
    order: OrderRef | None
    """None once the PHI was purged (order ended)."""
    phone: str | None
    """E.164 number to text, when the order carried a usable one."""
    sender: str | None = None
    """MSH-3^MSH-4 of the ORM that brought it (None: ``POST /api/orders``, or before migration 0013)."""
    mrn_key: str | None = None
    """:func:`mrn_key` of the order's MRN; None for orders stored before it was kept."""


def _seal_payload(order: OrderRef, phone: str | None) -> dict[str, Any]:
    name = order.name
    return {
        "order_id": order.order_id,
        "mrn": order.mrn,
        "placer_order_id": order.placer_order_id,
        "filler_order_id": order.filler_order_id,
        "procedure_code": order.procedure_code,
        "procedure_text": order.procedure_text,
        "procedure_system": order.procedure_system,
        "modality": order.modality,
        "family": name.family if name else "",
        "given": name.given if name else "",
        "middle": name.middle if name else "",
        "dob": order.date_of_birth.isoformat() if order.date_of_birth else "",
        "sex": order.sex,
        "mrn_authority": order.mrn_authority,
        "phone": phone or "",
    }


def _unseal(data: dict[str, Any]) -> tuple[OrderRef, str | None]:
    has_name = bool(data.get("family") or data.get("given"))
    ref = OrderRef(
        order_id=data["order_id"],
        mrn=data["mrn"],
        placer_order_id=data.get("placer_order_id", ""),
        filler_order_id=data.get("filler_order_id", ""),
        procedure_code=data.get("procedure_code", ""),
        procedure_text=data.get("procedure_text", ""),
        procedure_system=data.get("procedure_system", ""),
        modality=data.get("modality", ""),
        name=PatientName(data.get("family", ""), data.get("given", ""), data.get("middle", ""))
        if has_name
        else None,
        date_of_birth=date.fromisoformat(data["dob"]) if data.get("dob") else None,
        sex=data.get("sex", ""),
        mrn_authority=data.get("mrn_authority", ""),
    )
    return ref, (data.get("phone") or None)


_SELECT = "SELECT * FROM orders WHERE order_key = $1"
_SELECT_FOR_UPDATE = _SELECT + " FOR UPDATE"


class OrderStore:
    """Reads and writes ``orders`` on a connection the caller owns (so writes join its transaction)."""

    def __init__(self, hash_key: bytes, phi: PhiBox) -> None:
        self._hash_key = hash_key
        self._phi = phi

    def key(self, order_id: str) -> str:
        return order_key(self._hash_key, order_id)

    def hash_phone(self, phone: str) -> str:
        """The keyed phone hash (the same everywhere: conversations, consent, appointments)."""
        return phone_hash(self._hash_key, phone)

    def mrn_matches(self, stored: StoredOrder, mrn: str) -> bool:
        """Whether ``mrn`` is the order's (in constant time); False when nothing is left to tell."""
        given = mrn_key(self._hash_key, stored.order_key, mrn)
        if stored.mrn_key is not None:
            return hmac.compare_digest(given, stored.mrn_key)
        if stored.order is not None:  # stored before mrn_key: the sealed MRN is still there
            return hmac.compare_digest(
                given, mrn_key(self._hash_key, stored.order_key, stored.order.mrn)
            )
        return False

    @staticmethod
    def _aad(order_key_value: str) -> bytes:
        return b"order:" + order_key_value.encode()

    async def insert(
        self,
        conn: asyncpg.Connection,
        order: OrderRef,
        *,
        source: OrderSource,
        facility: str | None,
        phone: str | None,
        correlation_id: str,
        received_at: datetime,
        state: OrderState = "received",
        deferred_reason: str | None = None,
        sender: str | None = None,
    ) -> StoredOrder | None:
        """Insert a new order; None when an order with the same id already exists (a duplicate).

        ``sender`` is MSH-3^MSH-4 of the ORM (orders over MLLP): only it may cancel the order."""
        key = self.key(order.order_id)
        row_id = uuid.uuid4()
        sealed = self._phi.seal(_seal_payload(order, phone), aad=self._aad(key))
        hashed_mrn = mrn_key(self._hash_key, key, order.mrn)
        inserted = await conn.fetchval(
            """
            INSERT INTO orders (id, order_key, source, modality, facility, state, deferred_reason,
                                phi, received_at, updated_at, correlation_id, sender, mrn_key)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12)
            ON CONFLICT (order_key) DO NOTHING
            RETURNING id
            """,
            row_id,
            key,
            source,
            order.modality,
            facility,
            state,
            deferred_reason,
            sealed,
            received_at,
            correlation_id,
            sender,
            hashed_mrn,
        )
        if inserted is None:
            return None
        return StoredOrder(
            row_id,
            key,
            source,
            order.modality,
            facility,
            state,
            received_at,
            correlation_id,
            order,
            phone,
            sender,
            hashed_mrn,
        )

    async def get(
        self, conn: asyncpg.Connection, order_id: str, *, for_update: bool = False
    ) -> StoredOrder | None:
        return await self.get_by_key(conn, self.key(order_id), for_update=for_update)

    async def get_by_key(
        self, conn: asyncpg.Connection, key: str, *, for_update: bool = False
    ) -> StoredOrder | None:
        query = _SELECT_FOR_UPDATE if for_update else _SELECT
        row = await conn.fetchrow(query, key)
        if row is None:
            return None
        order: OrderRef | None = None
        phone: str | None = None
        if row["phi"] is not None:
            order, phone = _unseal(self._phi.open(bytes(row["phi"]), aad=self._aad(key)))
        return StoredOrder(
            row["id"],
            key,
            row["source"],
            row["modality"],
            row["facility"],
            row["state"],
            row["received_at"],
            row["correlation_id"],
            order,
            phone,
            row["sender"],
            row["mrn_key"],
        )

    async def sender_of(self, conn: asyncpg.Connection, key: str) -> str | None:
        """MSH-3^MSH-4 that sent the order; None when unknown, unrecorded or not sent over MLLP."""
        value = await conn.fetchval("SELECT sender FROM orders WHERE order_key = $1", key)
        return str(value) if value is not None else None

    async def set_state(
        self,
        conn: asyncpg.Connection,
        key: str,
        state: OrderState,
        *,
        now: datetime,
        deferred_reason: str | None = None,
        purge_phi: bool = False,
    ) -> None:
        await conn.execute(
            """
            UPDATE orders
               SET state = $2, updated_at = $3,
                   deferred_reason = coalesce($4, deferred_reason),
                   -- A booking still pending keeps the sealed order: resolving it re-sends the
                   -- same HL7 booking, built from the order (radsched/scheduling/service.py).
                   phi = CASE WHEN $5 AND NOT EXISTS (
                                SELECT 1 FROM bookings b
                                 WHERE b.order_key = $1 AND b.state = 'pending')
                              THEN NULL ELSE phi END
             WHERE order_key = $1
            """,
            key,
            state,
            now,
            deferred_reason,
            purge_phi,
        )


async def set_deferred_reason(conn: asyncpg.Connection, order_key: str, reason: str) -> None:
    await conn.execute(
        "UPDATE orders SET deferred_reason = $2 WHERE order_key = $1", order_key, reason
    )
