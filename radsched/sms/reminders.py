"""Reminders of appointments booked by text (issue 13 item 1): planned at the booking, sent by a sweep.

Three ties, each inside someone else's transaction:

* **planning** is a booking hook (after the appointment record's): when the RIS confirms a booking made by
  text, :meth:`Reminders.on_booked` computes the due times (radsched/conversation/reminders.py) and writes
  one ``appointment_reminders`` row each, with the number, location name, modality, procedure code and
  language sealed with PHI_KEY — in the transaction that marks the booking booked;
* **stopping** is an appointment-event listener: any cancel, deletion or reschedule, whichever path made it
  (our REST/CLI change, an SIU or ORM cancel from the RIS), cancels the pending rows in that transaction;
* **sending** is a sweep on the injected clock (a :class:`ConversationTimer` looking at the rows' ``due_at``):
  due rows are claimed ``FOR UPDATE SKIP LOCKED``, checked (the appointment still stands at that start, the
  phone has not opted out, still inside the window and before the start), and the text is queued into the
  SMS outbox in the transaction that marks the row sent — so each reminder is queued once, across crashes
  and several daemons, and the outbox's own rules send each queued text at most once.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter

from radsched.conversation.codec import load_conversation
from radsched.conversation.config import ConversationConfig
from radsched.conversation.reminders import (
    Offset,
    ReminderTexts,
    ReminderWindow,
    check_prep_lines,
    parse_reminder_window,
    parse_reminders,
    plan_reminders,
    send_time,
)
from radsched.errors import ConfigError
from radsched.privacy import PhiBox, phone_hash
from radsched.scheduling.lifecycle import Lifecycle
from radsched.scheduling.service import BookedAppointment, SchedulingService
from radsched.settings import Settings, toml_sections
from radsched.sms.timer import ConversationTimer, start_sweep
from radsched.storage import appointments as records
from radsched.storage import reminders as store
from radsched.storage.audit import AuditTrail
from radsched.storage.db import Database
from radsched.storage.orders import OrderStore
from radsched.storage.pg import Connection
from radsched.storage.sms_outbox import enqueue_text

log = logging.getLogger("radsched.sms.reminders")

__all__ = ["ReminderPolicy", "Reminders", "start"]

SWEEP_BATCH = 100
_STOPPING_EVENTS = frozenset({"rescheduled", "cancelled", "deleted"})


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    offsets: tuple[Offset, ...]
    window: ReminderWindow | None
    tz: ZoneInfo

    @classmethod
    def from_settings(cls, settings: Settings) -> ReminderPolicy:
        return cls(
            parse_reminders(settings.reminders),
            parse_reminder_window(settings.reminder_window),
            ZoneInfo(settings.timezone),
        )


@dataclass(frozen=True, slots=True)
class _Planned:
    """What planning needs of an appointment booked by text (the number only in memory, then sealed)."""

    appointment_id: str
    start: datetime
    location_id: str
    location_name: str
    modality: str
    procedure_code: str
    order_key: str
    phone: str


class Reminders:
    def __init__(
        self,
        *,
        db: Database,
        phi: PhiBox,
        hash_key: bytes,
        orders: OrderStore,
        policy: ReminderPolicy,
        clock: Callable[[], datetime],
        registry: CollectorRegistry | None,
    ) -> None:
        self._db = db
        self._phi = phi
        self._hash_key = hash_key
        self._orders = orders
        self.policy = policy
        self._clock = clock
        self._texts: ReminderTexts | None = None
        self._wake_outbox: Callable[[], None] = lambda: None
        self._timer: ConversationTimer | None = None
        self.lifecycle: Lifecycle | None = None
        """Where the record's sealed number is read after a reschedule (set where the record lives)."""
        self._outcomes = Counter(
            "radsched_reminders",
            "Appointment reminders by what became of them (sent, skipped_*, cancelled_*, planned).",
            ["outcome"],
            registry=registry,
        )

    # ---- planning: a booking hook, and again after a reschedule --------------------------------------

    async def on_booked(self, conn: Connection, booked: BookedAppointment) -> None:
        if self.policy.offsets:
            await self._guarded(conn, booked.appointment.id, self._plan_booked(conn, booked))

    async def _plan_booked(self, conn: Connection, booked: BookedAppointment) -> None:
        source, order_key = await records.booking_origin(conn, booked.booking_id)
        if source != "sms":
            return  # booked by staff or a portal: nobody asked us to text this patient
        stored = await self._orders.get_by_key(conn, order_key)
        if stored is None or not stored.phone:
            return
        slot = booked.appointment.slot
        await self._plan(
            conn,
            _Planned(
                appointment_id=booked.appointment.id,
                start=slot.start,
                location_id=slot.location_id,
                location_name=booked.appointment.location.name,
                modality=slot.modality,
                procedure_code=booked.order.procedure_code,
                order_key=order_key,
                phone=stored.phone,
            ),
        )

    async def _replan(self, conn: Connection, appointment_id: str) -> None:
        """A reschedule (any path) keeps the patient reminded, of the new time: from the record's sealed
        number while it is kept, the language and location names from the conversation."""
        if self.lifecycle is None:
            return
        row = await records.get(conn, appointment_id)
        if row is None or row.origin != "sms" or row.ended or row.order_key is None:
            return
        patient = await self.lifecycle.patient(conn, row)
        if patient is None:
            return
        order, phone = patient
        if not phone:
            return
        await self._plan(
            conn,
            _Planned(
                appointment_id=appointment_id,
                start=row.start_at,
                location_id=row.location_id,
                location_name="",
                modality=row.modality,
                procedure_code=order.procedure_code,
                order_key=row.order_key,
                phone=phone,
            ),
        )

    async def _guarded(
        self, conn: Connection, appointment_id: str, planning: Coroutine[Any, Any, None]
    ) -> None:
        """In a savepoint: a reminder that cannot be planned must never undo the booking or change it
        follows (logged and counted instead)."""
        try:
            async with conn.transaction():
                await planning
        except Exception:
            log.exception("reminders not planned", extra={"appointment_id": appointment_id})
            self._outcomes.labels("plan_failed").inc()

    async def _plan(self, conn: Connection, planned: _Planned) -> None:
        now = self._clock()
        due = plan_reminders(
            planned.start, now, self.policy.offsets, self.policy.window, self.policy.tz
        )
        if not due:
            return
        language, location_name = await self._conversation_facts(
            conn, planned.order_key, planned.location_id
        )
        payload = {
            "phone": planned.phone,
            "location_name": location_name or planned.location_name or planned.location_id,
            "modality": planned.modality,
            "procedure_code": planned.procedure_code,
            "language": language,
        }
        added = await store.insert_planned(
            conn,
            phi=self._phi,
            appointment_id=planned.appointment_id,
            start_at=planned.start,
            phone_hash=phone_hash(self._hash_key, planned.phone),
            due=[(d.kind, d.at) for d in due],
            payload=payload,
            now=now,
        )
        self._outcomes.labels("planned").inc(added)
        if self._timer is not None:
            self._timer.deadline(due[0].at)

    async def _conversation_facts(
        self, conn: Connection, order_key: str, location_id: str
    ) -> tuple[str | None, str | None]:
        """The language and the location's name as the patient was shown it, from the order's
        conversation (no PHI): the chosen location, or another it listed (after a move)."""
        data = await store.conversation_state(conn, order_key)
        if data is None:
            return None, None
        conv = load_conversation(_json(data))
        shown = (conv.location, *conv.locations) if conv.location else conv.locations
        name = next((loc.name for loc in shown if loc.id == location_id), None)
        return conv.language, name

    # ---- stopping: an appointment-event listener -----------------------------------------------------

    async def on_event(self, conn: Connection, appointment_id: str, kind: str) -> None:
        """Any cancel, deletion or reschedule cancels the pending reminders; a reschedule plans the new
        time's."""
        if kind not in _STOPPING_EVENTS:
            return
        cancelled = await store.cancel_pending(
            conn, appointment_id, outcome=kind, now=self._clock()
        )
        if cancelled:
            self._outcomes.labels(f"cancelled_{kind}").inc(cancelled)
        if kind == "rescheduled" and self.policy.offsets:
            await self._guarded(conn, appointment_id, self._replan(conn, appointment_id))

    # ---- sending: the sweep --------------------------------------------------------------------------

    def start_sweep(
        self, texts: ReminderTexts, wake_outbox: Callable[[], None], stack: AsyncExitStack
    ) -> None:
        self._texts = texts
        self._wake_outbox = wake_outbox
        self._timer = start_sweep(
            stack, self._db, self._clock, self.sweep, next_due=store.next_due, name="reminder-sweep"
        )

    def wake(self) -> None:
        """Look for due reminders now (tests that move the clock; the timer also looks every 30 s)."""
        if self._timer is not None:
            self._timer.wake()

    async def sweep(self) -> int:
        """Send every reminder due now; returns how many rows were settled."""
        settled = queued = 0
        while True:
            now = self._clock()
            async with self._db.transaction("reminders.sweep") as conn:
                due = await store.claim_due(conn, phi=self._phi, now=now, limit=SWEEP_BATCH)
                for reminder in due:
                    queued += await self._settle_guarded(conn, reminder, now)
            settled += len(due)
            if len(due) < SWEEP_BATCH:
                break
        if queued:
            self._wake_outbox()
        return settled

    async def _settle_guarded(
        self, conn: Connection, reminder: store.DueReminder, now: datetime
    ) -> int:
        """One bad row (a template or value the renderer refuses) is skipped, not retried forever in
        front of the others."""
        try:
            async with conn.transaction():
                return await self._settle(conn, reminder, now)
        except Exception:
            log.exception("reminder could not be sent", extra={"reminder": reminder.id})
            await store.finish(conn, reminder.id, state="skipped", outcome="skipped_error", now=now)
            self._outcomes.labels("skipped_error").inc()
            return 0

    async def _settle(self, conn: Connection, reminder: store.DueReminder, now: datetime) -> int:
        outcome = self._refusal(reminder)
        if outcome is None:
            at = send_time(now, reminder.start_at, self.policy.window, self.policy.tz)
            if at is None:
                outcome = "skipped_late"
            elif at > now:  # found after the window closed (the daemon was down): its next opening
                await store.postpone(conn, reminder.id, due_at=at, now=now)
                return 0
        if outcome is not None:
            await store.finish(
                conn,
                reminder.id,
                state="cancelled" if outcome.startswith("cancelled") else "skipped",
                outcome=outcome,
                now=now,
            )
            self._outcomes.labels(outcome).inc()
            log.info("reminder not sent", extra={"reminder": reminder.id, "outcome": outcome})
            return 0
        assert self._texts is not None and reminder.payload is not None
        payload = reminder.payload
        texts = self._texts.render(
            start=reminder.start_at,
            location_name=str(payload.get("location_name") or ""),
            modality=str(payload.get("modality") or reminder.modality),
            procedure_code=str(payload.get("procedure_code") or ""),
            language=payload.get("language"),
        )
        correlation_id = uuid.uuid4().hex[:16]
        trail = AuditTrail(
            reminder.phone_hash, None, correlation_id, reminder.modality, reminder.consent_state
        )
        for template_id, body in texts:
            await enqueue_text(
                conn,
                phi=self._phi,
                to_e164=str(payload["phone"]),
                body=body,
                template_id=template_id,
                phone_hash=reminder.phone_hash,
                conversation_id=None,
                correlation_id=correlation_id,
                now=now,
                not_after=reminder.start_at,  # a reminder held up in the outbox past the start is dropped
            )
            trail.add(template_id, "outbound", "queued")
        await trail.flush(conn, now)
        await store.finish(conn, reminder.id, state="sent", outcome=None, now=now)
        self._outcomes.labels("sent").inc()
        log.info("reminder queued", extra={"reminder": reminder.id, "kind": reminder.kind})
        return len(texts)

    @staticmethod
    def _refusal(reminder: store.DueReminder) -> str | None:
        if not reminder.appointment_live:
            return "cancelled_changed"  # cancelled or moved by a path that did not tell us
        if reminder.consent_state == "revoked":
            return "skipped_opted_out"
        if reminder.consent_state != "granted":
            return "skipped_no_consent"
        if reminder.payload is None or not reminder.payload.get("phone"):
            return "skipped_no_number"
        return None


def reminder_texts(cfg: ConversationConfig, sections: Mapping[str, Any]) -> ReminderTexts:
    """The reminder's wording from the conversation's templates and ``[sms.prep]`` (checked here)."""
    sms = sections.get("sms", {}) if isinstance(sections.get("sms"), Mapping) else {}
    table = sms.get("prep", {})
    if not isinstance(table, Mapping):
        raise ConfigError('RADSCHED_CONFIG [sms.prep]: must be a table of code = "line"')
    try:
        prep = check_prep_lines(table)
    except ValueError as exc:
        raise ConfigError(f"RADSCHED_CONFIG {exc}") from None
    return ReminderTexts(cfg.templates, cfg.practice_name, cfg.scheduling_phone, prep, cfg.timezone)


async def start(
    stack: AsyncExitStack,
    *,
    settings: Settings,
    db: Database,
    phi: PhiBox,
    hash_key: bytes,
    orders: OrderStore,
    registry: CollectorRegistry | None,
    clock: Callable[[], datetime],
    scheduling: SchedulingService | None,
    lifecycle: Lifecycle | None,
    conversation: ConversationConfig | None,
    wake_outbox: Callable[[], None],
) -> Reminders:
    """Plan and stop reminders where bookings are confirmed (the gateway role: ``scheduling`` and
    ``lifecycle``), send them where texts are sent (the sms role: the engine's ``conversation`` config,
    whose templates the reminder uses, with ``[sms.prep]`` from RADSCHED_CONFIG)."""
    texts = reminder_texts(conversation, toml_sections()) if conversation is not None else None
    reminders = Reminders(
        db=db,
        phi=phi,
        hash_key=hash_key,
        orders=orders,
        policy=ReminderPolicy.from_settings(settings),
        clock=clock,
        registry=registry,
    )
    if scheduling is not None and lifecycle is not None:
        # After the record's hook: the reminder rows refer to the appointment row it inserts.
        scheduling.add_booking_hook(reminders.on_booked)
        lifecycle.add_event_listener(reminders.on_event)
        reminders.lifecycle = lifecycle
    if texts is not None:
        reminders.start_sweep(texts, wake_outbox, stack)
    return reminders


def _json(data: Any) -> dict[str, Any]:
    return json.loads(data) if isinstance(data, str) else dict(data)
