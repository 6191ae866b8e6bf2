"""Performs what the conversation core decides, inside the caller's database transaction.

One call of :meth:`Driver.apply` is one event for one conversation: ``step`` it, write the texts to
the SMS outbox, record consent, audit, hand orders to staff, store the new state and — when the
conversation ends — delete its sealed PHI. Everything lands in the same transaction, so a crash
leaves either all of it or none of it. RIS commands (``FetchLocations``/``FetchSlots``/``Book``)
are not performed here: they must never run inside a transaction, so they come back as a
:class:`PendingCall` for the engine to make after commit (docs/sms.md, "The driver contract").

The conversation row (``sms_conversations``) holds the core's state as JSON (no PHI) and, in
``phi``, the few things a live conversation needs — the number to text back, the order id and the
MRN — sealed with ``PHI_KEY`` under the aad ``conversation:<id>``.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from radsched.conversation.codec import dump_conversation, load_conversation
from radsched.conversation.config import ConversationConfig
from radsched.conversation.model import (
    Audit,
    Book,
    Command,
    ConsentStatus,
    Conversation,
    ConversationKind,
    DeferReason,
    DeferToStaff,
    EndConversation,
    EndReason,
    Event,
    FetchLocations,
    FetchSlots,
    RecordConsent,
    Reschedule,
    ScheduleWake,
    SendText,
    State,
)
from radsched.conversation.reminders import REMINDER_TEXTS
from radsched.conversation.transition import step
from radsched.privacy import PhiBox
from radsched.storage import conversations
from radsched.storage.audit import AuditTrail
from radsched.storage.consents import record_consent
from radsched.storage.orders import OrderState, OrderStore
from radsched.storage.pg import Connection, Record
from radsched.storage.sms_outbox import OutboxIds, drop_pending_to_phone, enqueue_text

log = logging.getLogger("radsched.sms.driver")

__all__ = [
    "ConversationPhi",
    "Driver",
    "DriverMetrics",
    "Loaded",
    "PendingCall",
    "RisCommand",
    "StepResult",
]

RisCommand = FetchLocations | FetchSlots | Book | Reschedule
# A menu of times or places queued longer than this is dropped by the outbox, not sent late.
MENU_VALIDITY = timedelta(hours=1)
_END_ORDER_STATE: dict[EndReason, OrderState] = {
    EndReason.BOOKED: "booked",
    EndReason.CANCELLED: "cancelled",
    EndReason.OPTED_OUT: "deferred",
    EndReason.DEFERRED: "deferred",
    EndReason.EXPIRED: "deferred",
}
_CONSENT_WORD = {ConsentStatus.GRANTED: "granted", ConsentStatus.REVOKED: "revoked"}


@dataclass(frozen=True, slots=True)
class ConversationPhi:
    phone: str
    order_id: str
    mrn: str
    appointment_id: str = ""  # a change conversation's appointment (order id and MRN empty)


@dataclass(slots=True)
class Loaded:
    """A conversation row, locked by the caller's transaction (or about to be inserted)."""

    id: uuid.UUID
    conv: Conversation
    phone_hash: str
    order_key: str
    modality: str
    facility: str | None
    version: int
    phi: ConversationPhi | None
    consent: ConsentStatus
    new: bool = False


@dataclass(frozen=True, slots=True)
class PendingCall:
    """A RIS call the engine makes after commit, then answers with another event.

    ``state`` and ``busy_until`` identify the request: an answer is applied only if the
    conversation is still waiting for exactly this call (a later call or a timeout moved it on).
    """

    conversation_id: uuid.UUID
    command: RisCommand
    state: State
    busy_until: datetime | None
    order_id: str
    mrn: str
    correlation_id: str
    appointment_id: str = ""  # what a Reschedule moves


@dataclass(slots=True)
class StepResult:
    conv: Conversation
    pending: PendingCall | None = None
    texts: int = 0
    ended: bool = False
    deferred: list[DeferReason] = field(default_factory=list)


class DriverMetrics(Protocol):
    def deferred(self, modality: str, reason: str) -> None: ...
    def ended(self, modality: str, reason: str) -> None: ...
    def text_queued(self, template_id: str) -> None: ...


_CONSENT = {"granted": ConsentStatus.GRANTED, "revoked": ConsentStatus.REVOKED}


class Driver:
    """Loads, steps and stores conversations; performs every non-RIS command."""

    def __init__(
        self,
        *,
        cfg: ConversationConfig,
        phi: PhiBox,
        orders: OrderStore,
        metrics: DriverMetrics,
        outbox_ids: OutboxIds | None = None,
    ) -> None:
        self.cfg = cfg
        self._phi = phi
        self._orders = orders
        self._metrics = metrics
        self._outbox_ids = outbox_ids if outbox_ids is not None else OutboxIds()

    # --- loading ---------------------------------------------------------------------------

    async def load(self, conn: Connection, conversation_id: uuid.UUID) -> Loaded | None:
        row = await conversations.by_id(conn, conversation_id)
        return self._loaded(row) if row else None

    async def load_by_order(self, conn: Connection, order_key: str) -> Loaded | None:
        row = await conversations.by_order(conn, order_key)
        return self._loaded(row) if row else None

    async def load_for_phone(self, conn: Connection, phone_hash: str) -> Loaded | None:
        """The live conversation of this phone, else its most recent one (docs/sms.md rule 7)."""
        row = await conversations.for_phone(conn, phone_hash)
        return self._loaded(row) if row else None

    async def load_due(self, conn: Connection, now: datetime) -> Loaded | None:
        """One live conversation whose wake-up is due, skipping rows another worker holds."""
        row = await conversations.due(conn, now)
        return self._loaded(row) if row else None

    def _loaded(self, row: Record) -> Loaded:
        conv_id: uuid.UUID = row["id"]
        data = row["state_data"]
        conv = load_conversation(json.loads(data) if isinstance(data, str) else data)
        phi: ConversationPhi | None = None
        if row["phi"] is not None:
            opened = self._phi.open(bytes(row["phi"]), aad=_aad(conv_id))
            phi = ConversationPhi(
                opened["phone"],
                opened["order_id"],
                opened["mrn"],
                str(opened.get("appointment_id", "")),
            )
        return Loaded(
            conv_id,
            conv,
            row["phone_hash"],
            row["order_key"],
            row["modality"],
            row["facility"],
            row["version"],
            phi,
            _CONSENT.get(row["consent_state"], ConsentStatus.UNKNOWN),
        )

    def new(
        self,
        *,
        now: datetime,
        phone_hash: str,
        order_key: str,
        modality: str,
        facility: str | None,
        phi: ConversationPhi,
        consent: ConsentStatus,
    ) -> Loaded:
        conv_id = uuid.uuid4()
        return Loaded(
            conv_id,
            Conversation.new(str(conv_id), now),
            phone_hash,
            order_key,
            modality,
            facility,
            0,
            phi,
            consent,
            new=True,
        )

    # --- one event -------------------------------------------------------------------------

    async def apply(
        self,
        conn: Connection,
        loaded: Loaded,
        event: Event,
        now: datetime,
        correlation_id: str,
        *,
        reply_to: str | None = None,
    ) -> StepResult:
        """Step ``event`` and perform the commands on ``conn``; the caller commits.

        ``reply_to`` is the number a webhook text came from: an ended conversation has no
        sealed number any more, but may still owe an answer (HELP, START, the "closed" text).
        """
        conv, commands = step(loaded.conv, event, now, self.cfg)
        phone = loaded.phi.phone if loaded.phi else reply_to
        outcome = await self.record(
            conn, loaded, conv, commands, now=now, correlation_id=correlation_id, phone=phone
        )
        for command in commands:
            if isinstance(command, FetchLocations | FetchSlots | Book | Reschedule) and loaded.phi:
                outcome.pending = PendingCall(
                    loaded.id,
                    command,
                    conv.state,
                    conv.busy_until,
                    loaded.phi.order_id,
                    loaded.phi.mrn,
                    correlation_id,
                    loaded.phi.appointment_id,
                )
        return outcome

    async def record(
        self,
        conn: Connection,
        loaded: Loaded,
        conv: Conversation,
        commands: list[Command],
        *,
        now: datetime,
        correlation_id: str,
        phone: str | None,
    ) -> StepResult:
        """Perform ``commands`` (all but the RIS calls), store ``conv``, write the audit rows."""
        trail = AuditTrail(
            loaded.phone_hash,
            loaded.id,
            correlation_id,
            loaded.modality,
            _CONSENT_WORD.get(loaded.consent, "unknown"),
        )
        outcome = await self.perform(
            conn,
            commands,
            trail=trail,
            phone=phone,
            now=now,
            conversation_id=loaded.id,
            # A change conversation has no order: its ending leaves the (booked) order alone.
            order_key=loaded.order_key if conv.kind is ConversationKind.BOOKING else None,
            modality=loaded.modality,
            state_after=conv.state.value,
        )
        outcome.conv = conv
        await self.store(conn, loaded, conv, now, ended=outcome.ended, trail=trail)
        return outcome

    async def perform(
        self,
        conn: Connection,
        commands: list[Command],
        *,
        trail: AuditTrail,
        phone: str | None,
        now: datetime,
        conversation_id: uuid.UUID | None,
        order_key: str | None,
        modality: str | None,
        state_after: str | None = None,
    ) -> StepResult:
        """Everything but the RIS calls; also used for texts that belong to no conversation.

        ``state_after`` is recorded as the outcome of an inbound text's audit row.
        """
        outcome = StepResult(conv=Conversation.new("", now))
        for command in commands:
            match command:
                case SendText():
                    if phone is None:
                        trail.add("text_skipped", "system", "no_number")
                        continue
                    not_after = now + MENU_VALIDITY if command.time_sensitive else None
                    await enqueue_text(
                        conn,
                        phi=self._phi,
                        to_e164=phone,
                        body=command.text,
                        template_id=command.template_id.value,
                        phone_hash=trail.phone_hash,
                        conversation_id=conversation_id,
                        correlation_id=trail.correlation_id,
                        now=now,
                        not_after=not_after,
                        ids=self._outbox_ids,
                    )
                    outcome.texts += 1
                    self._metrics.text_queued(command.template_id.value)
                    trail.add(command.template_id.value, "outbound", "queued")
                case RecordConsent(granted=granted, source=source):
                    await record_consent(
                        conn, trail.phone_hash, granted=granted, source=source, now=now
                    )
                    if not granted:
                        await drop_pending_to_phone(
                            conn, trail.phone_hash, REMINDER_TEXTS, f"opted out ({source})"
                        )
                    trail.consent_state = "granted" if granted else "revoked"
                    trail.add("consent_granted" if granted else "consent_revoked", "system", source)
                case Audit(kind="inbound", detail=intent):
                    trail.add(intent or "unknown", "inbound", state_after)
                case Audit(kind=kind, detail=detail):
                    trail.add(kind, "system", str(detail) or None)
                case DeferToStaff(reason=reason):
                    outcome.deferred.append(reason)
                    # Only an order is handed over (radsched_sms_deferrals counts orders): a change
                    # conversation's appointment stays booked as it was, and its audit says why.
                    if order_key is not None:
                        await self._orders.set_state(
                            conn, order_key, "deferred", now=now, deferred_reason=reason.value
                        )
                        self._metrics.deferred(modality or "", reason.value)
                case EndConversation(reason=reason):
                    outcome.ended = True
                    if order_key is not None:
                        # The order's sealed copy goes with the conversation's (DESIGN.md s. 9).
                        await self._orders.set_state(
                            conn, order_key, _END_ORDER_STATE[reason], now=now, purge_phi=True
                        )
                    self._metrics.ended(modality or "", reason.value)
                case ScheduleWake() | FetchLocations() | FetchSlots() | Book() | Reschedule():
                    pass  # wake_at is stored with the state; RIS calls are the engine's
        return outcome

    async def perform_outside(
        self,
        conn: Connection,
        commands: list[Command],
        *,
        trail: AuditTrail,
        phone: str,
        now: datetime,
        modality: str | None = None,
        state_after: str | None = None,
    ) -> StepResult:
        """Perform texts that belong to no conversation (a stray reply, news of an appointment)
        and write their audit rows."""
        outcome = await self.perform(
            conn,
            commands,
            trail=trail,
            phone=phone,
            now=now,
            conversation_id=None,
            order_key=None,
            modality=modality,
            state_after=state_after,
        )
        await trail.flush(conn, now)
        return outcome

    async def store(
        self,
        conn: Connection,
        loaded: Loaded,
        conv: Conversation,
        now: datetime,
        *,
        ended: bool,
        trail: AuditTrail | None = None,
    ) -> None:
        """Write the conversation row — and ``trail``'s audit rows in the same statement."""
        state_data = json.dumps(dump_conversation(conv), separators=(",", ":"))
        if loaded.new:
            sealed = (
                self._phi.seal(_phi_dict(loaded.phi), aad=_aad(loaded.id))
                if loaded.phi is not None and not ended
                else None
            )
            params: list[Any] = [
                loaded.id,
                loaded.phone_hash,
                loaded.order_key,
                loaded.modality,
                loaded.facility,
                conv.state.value,
                state_data,
                sealed,
                now,
                conv.expires_at or now,
                conv.wake_at,
                now if ended else None,
            ]
        else:
            params = [
                loaded.id,
                conv.state.value,
                state_data,
                now,
                conv.expires_at,
                conv.wake_at,
                ended or conv.is_over,
            ]
        await conversations.write(conn, params, new=loaded.new, trail=trail, now=now)
        if loaded.new:
            loaded.new = False
        else:
            loaded.version += 1
        loaded.conv = conv


def _aad(conversation_id: uuid.UUID) -> bytes:
    return b"conversation:" + str(conversation_id).encode()


def _phi_dict(phi: ConversationPhi) -> dict[str, Any]:
    sealed = {"phone": phi.phone, "order_id": phi.order_id, "mrn": phi.mrn}
    if phi.appointment_id:
        sealed["appointment_id"] = phi.appointment_id
    return sealed
