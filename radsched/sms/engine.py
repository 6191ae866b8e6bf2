"""The SMS conversation engine: events from patients, the RIS, the clock and the order intake.

:class:`SmsEngine` is what the other components call:

- the order intake calls :meth:`SmsEngine.start_order` / :meth:`SmsEngine.cancel_order` inside the
  intake transaction, so the order, its conversation and its first text commit together;
- the Twilio webhooks call :meth:`SmsEngine.on_inbound_text` (after verifying the signature and
  de-duplicating the MessageSid) and :meth:`SmsEngine.on_delivery_failure`;
- a timer task feeds ``Tick`` to conversations whose ``wake_at`` is due (quiet hours ending, a RIS
  call left unanswered, expiry).

A RIS call is never made inside a transaction: transaction 1 steps the event and records the
conversation as busy (state ``loading_*``/``booking`` with ``busy_until``), the call runs after
commit, and transaction 2 feeds the answer — only if the conversation still waits for that very
call. A crash in between leaves a busy conversation that the timer answers with ``RisDown``
after ``busy_timeout``; a repeated booking is idempotent in the scheduling service.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from radsched.conversation.after_booking import reply_of
from radsched.conversation.keywords import Stop, classify
from radsched.conversation.model import (
    BUSY_STATES,
    Audit,
    BookingConfirmed,
    ChangeRequested,
    Command,
    ConsentStatus,
    Conversation,
    DeferReason,
    DeferToStaff,
    EndConversation,
    EndReason,
    Event,
    InboundText,
    OrderCancelled,
    OrderReceived,
    State,
    Tick,
)
from radsched.conversation.reminders import REMINDER_TEXTS
from radsched.conversation.ris_wait import waiting_command
from radsched.conversation.stray import stray_reply
from radsched.conversation.waitlist import WaitlistReply, waitlist_reply
from radsched.logs import correlated
from radsched.modality import ModalityControl
from radsched.privacy import normalise_phone, phone_hash
from radsched.sms.after_booking import AfterBooking
from radsched.sms.driver import ConversationPhi, Driver, Loaded, PendingCall, RisCommand, StepResult
from radsched.sms.engine_metrics import EngineMetrics
from radsched.sms.ris_calls import RisCaller
from radsched.sms.timer import ConversationTimer
from radsched.sms.waitlist import Waitlist
from radsched.storage import conversations
from radsched.storage.appointments import AppointmentRow
from radsched.storage.audit import AuditTrail, recent_endings
from radsched.storage.consents import get_consent, record_consent
from radsched.storage.db import Database
from radsched.storage.orders import StoredOrder, set_deferred_reason
from radsched.storage.pg import Connection
from radsched.storage.sms_outbox import drop_pending, drop_pending_to_phone
from radsched.tasks import spawn

log = logging.getLogger("radsched.sms.engine")

__all__ = ["SmsEngine", "StartResult"]

# Twilio errors that end a conversation (reference/sms.md section 1.5).
OPTED_OUT_AT_CARRIER = 21610
NOT_TEXTABLE_CODES = frozenset({21211, 21614, 30005, 30006})
RIS_CALLS_IN_FLIGHT = 4
_DUE_BATCH = 200


_CONSENT: dict[str | None, ConsentStatus] = {
    "granted": ConsentStatus.GRANTED,
    "revoked": ConsentStatus.REVOKED,
}


class Waker(Protocol):
    def wake(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StartResult:
    status: Literal["accepted", "deferred_to_phone"]
    """What the order's sender is told (``POST /api/orders``)."""
    outcome: str
    """The ``radsched_orders_total`` outcome label: ``accepted`` or ``deferred_<reason>``."""


class SmsEngine:
    def __init__(
        self,
        *,
        db: Database,
        driver: Driver,
        ris: RisCaller,
        hash_key: bytes,
        clock: Callable[[], datetime],
        metrics: EngineMetrics,
        outbox: Callable[[], Waker | None],
        after_booking: AfterBooking | None = None,
    ) -> None:
        self._db = db
        self.after_booking = after_booking
        """Replies to an appointment booked by text ("1", "3", STOP): issue 13 items 2 and 3."""
        self.waitlist: Waitlist | None = None
        """Earlier-slot offers (W, YES/NO to a live offer, STOP): issue 13 item 5 (set at start)."""
        self.driver = driver
        self._ris = ris
        self._hash_key = hash_key
        self._clock = clock
        self.metrics = metrics
        self._outbox = outbox
        self._tasks: set[asyncio.Task[None]] = set()
        # The RIS answers one request at a time per connection; more calls in flight only queue
        # there while holding database connections that the webhooks' transactions need.
        self._ris_slots = asyncio.Semaphore(RIS_CALLS_IN_FLIGHT)
        self._timer = ConversationTimer(db, clock, self.fire_due)
        self._stopping = False
        self.modalities: ModalityControl | None = None
        """The modality switches (set by the intake component), for operators' tooling and tests."""

    # --- order intake (inside the intake transaction) --------------------------------------

    async def start_order(
        self,
        conn: Connection,
        order: StoredOrder,
        *,
        phone: str,
        modality_enabled: bool,
        correlation_id: str,
        language: str | None = None,
    ) -> StartResult:
        """Create the order's conversation and perform its first step on ``conn``."""
        assert order.order is not None
        now = self._clock()
        hashed = phone_hash(self._hash_key, phone)
        # Serialise orders for one phone (docs/sms.md rule 7, below).
        consent_state, busy = await conversations.lock_phone(conn, hashed)
        consent = _CONSENT.get(consent_state, ConsentStatus.UNKNOWN)
        loaded = self.driver.new(
            now=now,
            phone_hash=hashed,
            order_key=order.order_key,
            modality=order.modality,
            facility=order.facility,
            phi=ConversationPhi(phone, order.order.order_id, order.order.mrn),
            consent=consent,
        )
        # Replies cannot be told apart between two live conversations of one phone (docs/sms.md
        # rule 7): the second order goes to staff without a text.
        event = OrderReceived(
            modality=order.modality,
            modality_enabled=modality_enabled,
            consent=consent,
            textable=not busy,
            ris_reachable=self._ris.reachable(),
            language=language,
        )
        with correlated(correlation_id):
            outcome = await self._apply(
                conn, loaded, event, now=now, correlation_id=correlation_id, kind="order"
            )
        if outcome.deferred or outcome.conv.is_over:
            reason = outcome.deferred[0].value if outcome.deferred else "other"
            if busy:
                reason = "phone_busy"
                await set_deferred_reason(conn, order.order_key, reason)
            return StartResult("deferred_to_phone", "deferred_" + reason)
        return StartResult("accepted", "accepted")  # the order was stored as 'texting'

    async def cancel_order(self, conn: Connection, order_key: str, correlation_id: str) -> bool:
        """ORC-1 = CA: end the conversation (no text) and drop its unsent texts."""
        loaded = await self.driver.load_by_order(conn, order_key)
        if loaded is None:
            return False
        now = self._clock()
        await self._apply(
            conn, loaded, OrderCancelled(), now=now, correlation_id=correlation_id, kind="cancel"
        )
        dropped = await self._drop_pending_texts(conn, loaded.id, "order cancelled")
        log.info("order cancelled", extra={"conversation": str(loaded.id), "texts": dropped})
        return True

    # --- patient texts (from the webhook) --------------------------------------------------

    async def on_inbound_text(
        self, from_e164: str, body: str, message_sid: str, correlation_id: str
    ) -> None:
        phone = normalise_phone(from_e164)
        if phone is None:
            log.warning("inbound text from an invalid number ignored", extra={"sid": message_sid})
            return
        hashed = phone_hash(self._hash_key, phone)
        event = InboundText(body, message_sid)
        with correlated(correlation_id):
            now = self._clock()
            async with self._db.transaction("sms.inbound") as conn:
                loaded = await self.driver.load_for_phone(conn, hashed)
                after = self.after_booking
                over = loaded is None or loaded.conv.is_over
                waitlist = self.waitlist if over else None
                # YES/NO are the waitlist's only while the phone has a live offer (else a booking
                # conversation's, or a stray reply's).
                offered = (
                    waitlist is not None and await waitlist.live_offer(conn, hashed) is not None
                )
                listed = waitlist_reply(body, live_offer=offered) if waitlist is not None else None
                reply = reply_of(body) if over and listed is None else None
                stop = isinstance(classify(body), Stop)
                upcoming = (
                    await after.upcoming(conn, hashed)
                    if after is not None and (reply is not None or stop or listed is not None)
                    else []
                )
                accept = None
                if (
                    waitlist is not None
                    and listed is not None
                    and (upcoming or listed is not WaitlistReply.TOGGLE)
                ):
                    accept = await waitlist.on_reply(
                        conn,
                        listed,
                        upcoming,
                        phone=phone,
                        phone_hash=hashed,
                        correlation=correlation_id,
                    )
                    pending = None
                elif after is not None and reply is not None and upcoming:
                    record = await after.on_reply(
                        conn,
                        reply,
                        upcoming,
                        phone=phone,
                        phone_hash=hashed,
                        correlation=correlation_id,
                    )
                    pending = (
                        await self._start_change(
                            conn,
                            upcoming[0],
                            phone=phone,
                            hashed=hashed,
                            now=now,
                            correlation_id=correlation_id,
                        )
                        if record == "change"
                        else None
                    )
                elif loaded is None:
                    await self._stray(
                        conn, hashed, phone, event, now=now, correlation_id=correlation_id
                    )
                    pending = None
                else:
                    outcome = await self._apply(
                        conn,
                        loaded,
                        event,
                        now=now,
                        correlation_id=correlation_id,
                        kind="inbound",
                        reply_to=phone,
                    )
                    pending = outcome.pending
                if after is not None and stop and upcoming:
                    # Revoked above like any STOP; a person decides about the appointments.
                    await after.on_opted_out(
                        conn, upcoming, phone=phone, phone_hash=hashed, correlation=correlation_id
                    )
                if stop and self.waitlist is not None:
                    await self.waitlist.on_opted_out(conn, hashed)
            self.wake_outbox()
            if pending is not None:
                self._spawn(pending)
            if accept is not None and self.waitlist is not None:
                # YES: the reschedule asks the RIS, outside any transaction.
                self._track(
                    spawn(
                        self.waitlist.accept(accept, phone=phone, correlation=correlation_id),
                        name="sms-waitlist-accept",
                    )
                )

    async def _start_change(
        self,
        conn: Connection,
        row: AppointmentRow,
        *,
        phone: str,
        hashed: str,
        now: datetime,
        correlation_id: str,
    ) -> PendingCall | None:
        """ "2" after the booking: a change conversation for ``row``, its first RIS call pending.

        Like an order's conversation (the phone serialised, the number sealed); the appointment id is
        sealed in place of the order id and MRN, which the lifecycle's reschedule does not need.
        """
        consent_state, busy = await conversations.lock_phone(conn, hashed)
        if busy:  # a conversation started since the look above: it gets the replies
            return None
        consent = _CONSENT.get(consent_state, ConsentStatus.UNKNOWN)
        conversation_id = uuid.uuid4()
        loaded = self.driver.new(
            now=now,
            phone_hash=hashed,
            order_key=f"change:{conversation_id}",  # unique; never an order's HMAC (hex)
            modality=row.modality,
            facility=None,
            phi=ConversationPhi(phone, "", "", appointment_id=row.appointment_id),
            consent=consent,
        )
        event = ChangeRequested(row.modality, row.location_id, consent)
        outcome = await self._apply(
            conn, loaded, event, now=now, correlation_id=correlation_id, kind="change"
        )
        return outcome.pending

    async def _stray(
        self,
        conn: Connection,
        hashed: str,
        phone: str,
        event: InboundText,
        *,
        now: datetime,
        correlation_id: str,
    ) -> None:
        consent = await get_consent(conn, hashed)
        recent = await recent_endings(conn, hashed, now - timedelta(days=1))
        commands = stray_reply(event, consent, recent, now, self.driver.cfg)
        trail = AuditTrail(hashed, None, correlation_id, None, consent.value)
        await self.driver.perform_outside(
            conn, commands, trail=trail, phone=phone, now=now, state_after="no_conversation"
        )

    async def on_delivery_failure(
        self, phone_hash: str, error_code: int, correlation_id: str
    ) -> None:
        """Twilio refused a text for good: 21610 opted out at the carrier; 21211/21614 bad number."""
        opted_out = error_code == OPTED_OUT_AT_CARRIER
        if not opted_out and error_code not in NOT_TEXTABLE_CODES:
            return
        with correlated(correlation_id):
            now = self._clock()
            async with self._db.transaction("sms.delivery_failure") as conn:
                trail = AuditTrail(phone_hash, None, correlation_id, None)
                if opted_out:
                    await record_consent(
                        conn, phone_hash, granted=False, source=f"twilio-{error_code}", now=now
                    )
                    await drop_pending_to_phone(
                        conn, phone_hash, REMINDER_TEXTS, f"twilio {error_code}"
                    )
                    trail.consent_state = "revoked"
                    trail.add("consent_revoked", "system", f"twilio-{error_code}")
                    if self.waitlist is not None:
                        await self.waitlist.on_opted_out(conn, phone_hash)
                loaded = await self.driver.load_for_phone(conn, phone_hash)
                if loaded is not None and not loaded.conv.is_over:
                    trail.session_id, trail.modality = loaded.id, loaded.modality
                    await self._end_from_outside(
                        conn,
                        loaded,
                        opted_out=opted_out,
                        error_code=error_code,
                        now=now,
                        correlation_id=correlation_id,
                    )
                await trail.flush(conn, now)

    async def _end_from_outside(
        self,
        conn: Connection,
        loaded: Loaded,
        *,
        opted_out: bool,
        error_code: int,
        now: datetime,
        correlation_id: str,
    ) -> None:
        # No core event exists for "the carrier says this number cannot be texted"; the ending is
        # the core's own (defer, audit, end), performed without a text that could not arrive.
        reason = EndReason.OPTED_OUT if opted_out else EndReason.DEFERRED
        defer = DeferReason.OPTED_OUT if opted_out else DeferReason.NOT_TEXTABLE
        state = State.OPTED_OUT if opted_out else State.DEFERRED_TO_PHONE
        commands: list[Command] = [
            Audit("delivery_failed", str(error_code)),
            DeferToStaff(defer),
            Audit("deferred", defer),
            Audit("ended", reason),
            EndConversation(reason),
        ]
        conv = dataclasses.replace(
            loaded.conv,
            state=state,
            end_reason=reason,
            busy_until=None,
            wake_at=None,
            expires_at=None,
        )
        if opted_out:
            loaded.consent = ConsentStatus.REVOKED
        await self.driver.record(
            conn, loaded, conv, commands, now=now, correlation_id=correlation_id, phone=None
        )
        await self._drop_pending_texts(conn, loaded.id, f"twilio {error_code}")

    async def _drop_pending_texts(
        self, conn: Connection, conversation_id: uuid.UUID, why: str
    ) -> str:
        """Unsent texts of an ended conversation are dropped (their sealed payload deleted)."""
        return await drop_pending(conn, conversation_id, why)

    # --- RIS calls (outside any transaction) -----------------------------------------------

    def _spawn(self, pending: PendingCall) -> None:
        self._track(spawn(self._ris_loop(pending), name="sms-ris-call"))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ris_loop(self, pending: PendingCall | None) -> None:
        while pending is not None and not self._stopping:
            with correlated(pending.correlation_id):
                try:
                    async with self._ris_slots:
                        answer = await self._ris.answer(pending)
                        pending = await self._feed_answer(pending, answer)
                except Exception:
                    # The conversation stays busy; the timer answers RisDown at busy_until.
                    log.exception("RIS call for a conversation failed unexpectedly")
                    return
            self.wake_outbox()

    async def _feed_answer(self, pending: PendingCall, answer: Event) -> PendingCall | None:
        now = self._clock()
        async with self._db.transaction("sms.ris_answer") as conn:
            loaded = await self.driver.load(conn, pending.conversation_id)
            if loaded is None:
                return None
            conv = loaded.conv
            moved_on = conv.state is not pending.state or conv.busy_until != pending.busy_until
            # The conversation moved on (timeout, STOP, cancel): the answer is stale — except a
            # confirmed booking after the end, which the core hands to staff.
            if moved_on and not (isinstance(answer, BookingConfirmed) and conv.is_over):
                trail = AuditTrail(
                    loaded.phone_hash, loaded.id, pending.correlation_id, loaded.modality
                )
                trail.add("late_ris_answer", "system", type(answer).__name__)
                await trail.flush(conn, now)
                return None
            outcome = await self._apply(
                conn,
                loaded,
                answer,
                now=now,
                correlation_id=pending.correlation_id,
                kind=type(answer).__name__,
            )
            return outcome.pending

    async def resume_waiting(self) -> int:
        """Re-issue the RIS call of every conversation left waiting by a previous process.

        A daemon killed (or a database restarted) between a RIS request and its answer leaves the
        conversation busy; without this the patient would hear nothing until the busy timeout
        and, for a booking the RIS did make, would be told to call instead of getting the code.
        Booking is idempotent on (order, slot), so asking again returns the stored outcome.
        Called once at start, after every component (the booking resolver, the SIU hook) is up.
        """
        async with self._db.transaction("sms.resume_waiting") as conn:
            ids = await conversations.live_in_states(conn, [s.value for s in BUSY_STATES])
        resumed = 0
        for conversation_id in ids:
            correlation_id = uuid.uuid4().hex[:16]
            async with self._db.transaction("sms.resume_one") as conn:
                loaded = await self.driver.load(conn, conversation_id)
                if loaded is None or loaded.phi is None:
                    continue
                command = self._waiting_command(loaded.conv)
            if command is None:
                continue
            self._spawn(
                PendingCall(
                    loaded.id,
                    command,
                    loaded.conv.state,
                    loaded.conv.busy_until,
                    loaded.phi.order_id,
                    loaded.phi.mrn,
                    correlation_id,
                    loaded.phi.appointment_id,
                )
            )
            resumed += 1
        if resumed:
            log.info("re-issued RIS calls left waiting", extra={"conversations": resumed})
        return resumed

    def _waiting_command(self, conv: Conversation) -> RisCommand | None:
        """The RIS request a busy conversation is waiting for, rebuilt from its stored state."""
        if conv.ris_retry_at is not None:
            return None  # waiting out a RIS outage: the timer's Tick asks again (ris_wait.py)
        return waiting_command(conv, self.driver.cfg.slot_page_size)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for in-flight RIS calls (tests, shutdown)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=remaining)

    # --- timer -----------------------------------------------------------------------------

    async def fire_due(self, limit: int = _DUE_BATCH) -> int:
        """Feed ``Tick`` to every conversation whose wake-up is due now; return how many."""
        fired = 0
        seen: set[uuid.UUID] = set()
        while fired < limit and not self._stopping:
            now = self._clock()
            correlation_id = uuid.uuid4().hex[:16]
            pending: PendingCall | None = None
            async with self._db.transaction("sms.tick") as conn:
                loaded = await self.driver.load_due(conn, now)
                if loaded is None or loaded.id in seen:
                    break
                seen.add(loaded.id)
                with correlated(correlation_id):
                    outcome = await self._apply(
                        conn, loaded, Tick(), now=now, correlation_id=correlation_id, kind="tick"
                    )
                pending = outcome.pending
            fired += 1
            if pending is not None:
                self._spawn(pending)
        if fired:
            self.wake_outbox()
        return fired

    def wake_timer(self) -> None:
        self._timer.wake()

    def start_timer(self) -> None:
        self._timer.start()

    async def aclose(self, grace: float = 5.0) -> None:
        self._stopping = True
        await self._timer.aclose()
        await self.drain(grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- plumbing --------------------------------------------------------------------------

    async def _apply(
        self,
        conn: Connection,
        loaded: Loaded,
        event: Event,
        *,
        now: datetime,
        correlation_id: str,
        kind: str,
        reply_to: str | None = None,
    ) -> StepResult:
        with self.metrics.transitions.labels(kind).time():
            outcome = await self.driver.apply(
                conn, loaded, event, now, correlation_id, reply_to=reply_to
            )
        if outcome.conv.wake_at is not None:
            self._timer.deadline(outcome.conv.wake_at)
        return outcome

    def wake_outbox(self) -> None:
        outbox = self._outbox()
        if outbox is not None:
            outbox.wake()
