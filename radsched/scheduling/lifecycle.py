"""The appointment lifecycle after the booking: the record, reschedule and cancel, and changes from the RIS.

Use cases (the REST facade, the CLI and later the SMS engine call them; none sees HL7):

* :meth:`Lifecycle.record_booked` — the booking hook: every appointment the RIS confirmed becomes a row of
  ``appointments`` (keyed by our placer id) in the booking's transaction, with an ``booked`` event;
* :meth:`Lifecycle.cancel` / :meth:`Lifecycle.reschedule` — crash-safe like booking: the change row (state
  ``pending``, our MSH-10) is committed before the SRM^S04/S02 (ORM CA/XO) leaves; a repeat returns the stored
  outcome without a second HL7 request; a pending change (no answer, or a crash between send and answer) is
  re-sent with the SAME MSH-10, which the RIS de-duplicates, so it ends in one state. At most one change is
  pending per appointment (a unique index), so a cancel racing a reschedule gets 409 instead of two truths;
* :meth:`Lifecycle.apply_siu` / :meth:`Lifecycle.apply_order` — changes staff made in the RIS (SIU S13/S14/S15/
  S17 matched by SCH-2 or SCH-1; ORM CA/OC/DC for an order we booked) update the record in the inbound
  message's transaction; a no-show (S26, or S14 with SCH-25 ``Noshow``) appends a ``noshow`` event; an S12 from the RIS for an appointment we did not book is recorded (origin ``ris``). Unknown appointments change nothing (the sender is ACKed as today); an S15 for an
  appointment already cancelled is ACKed and changes nothing.

Every change that reaches the record also queues its SIU (S13/S14/S15/S17) to the EMR destinations that got
the S12, through the same FIFO outbox (:class:`ChangeNotifier`), and appends an ``appointment_events`` row the
SMS engine follows (issue 13) — all in one transaction. Patient identifiers are sealed with PHI_KEY in the
record until one day after the start, or until the cancel (docs/privacy.md).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal, Protocol

import channels
from channels import ChangeKind, ChangeResult, Dialect, Location, OrderRef, SiuMessage, Slot
from channels.changes import CONFIRMED_EVENT
from radsched.conversation.news import AppointmentNews, NewsKind
from radsched.logs import correlated, correlation_id
from radsched.privacy import PhiBox, confirmation_code
from radsched.scheduling.client import RisClient
from radsched.scheduling.control_ids import ControlIds
from radsched.scheduling.errors import SchedulingError
from radsched.storage import appointments as store
from radsched.storage.appointments import AppointmentRow, ChangeRow
from radsched.storage.db import Database
from radsched.storage.orders import OrderStore, _seal_payload, _unseal
from radsched.storage.pg import Connection
from radsched.tasks import spawn

log = logging.getLogger("radsched.lifecycle")

#: Patient identifiers are kept this long after the appointment's start (then erased by retention).
PHI_AFTER_START = timedelta(days=1)
RESOLVE_INTERVAL_S = 30.0
GIVE_UP_AFTER = timedelta(hours=24)

Clock = Callable[[], datetime]
ChangeOrigin = Literal["rest", "sms", "cli"]


class UnknownAppointment(SchedulingError):
    http_status = 404
    code = "unknown_appointment"


class ChangeRefused(SchedulingError):
    """The RIS refused (AE/AR, ORC-1 UC): the appointment stands as it was."""

    http_status = 409
    code = "change_refused"


class ChangeConflict(SchedulingError):
    """Another change (or the booking itself) is still waiting for the RIS, or the appointment ended."""

    http_status = 409
    code = "appointment_conflict"


# ---- what the record looks like to callers ---------------------------------------------------------------


@dataclass(frozen=True)
class AppointmentView:
    """The record without PHI (what ``GET /api/ris/appointments/{id}`` and the CLI show)."""

    id: str
    filler_appointment_id: str
    status: str
    origin: str
    location_id: str
    modality: str
    slot_id: str
    start: datetime
    duration_minutes: int
    confirmation_code: str
    emr_destinations: tuple[str, ...]
    patient_identifiers_until: datetime | None
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, row: AppointmentRow) -> AppointmentView:
        return cls(
            id=row.appointment_id,
            filler_appointment_id=row.filler_appointment_id or "",
            status=row.status,
            origin=row.origin,
            location_id=row.location_id,
            modality=row.modality,
            slot_id=row.slot_id,
            start=row.start_at,
            duration_minutes=row.duration_minutes,
            confirmation_code=row.confirmation_code or "",
            emr_destinations=row.emr_destinations,
            patient_identifiers_until=row.phi_expires_at if row.phi is not None else None,
            updated_at=row.updated_at,
            version=row.version,
        )

    def json(self, tz: tzinfo) -> dict[str, Any]:
        return {
            "id": self.id,
            "filler_appointment_id": self.filler_appointment_id,
            "status": self.status,
            "origin": self.origin,
            "location": self.location_id,
            "modality": self.modality,
            "slot_id": self.slot_id,
            "start": self.start.astimezone(tz).isoformat(),
            "duration_minutes": self.duration_minutes,
            "emr_destinations": list(self.emr_destinations),
            "updated_at": self.updated_at.astimezone(tz).isoformat(),
        }


@dataclass(frozen=True)
class ChangeOutcome:
    appointment: AppointmentView
    kind: ChangeKind
    replayed: bool
    """True when an idempotent repeat returned the stored outcome (no HL7 sent)."""


@dataclass(frozen=True)
class AppointmentChanged:
    """What the EMR notifier needs: the record after the change and the patient (for PID)."""

    appointment: channels.Appointment
    order: OrderRef
    kind: ChangeKind
    destinations: tuple[str, ...]
    reason: str
    event: tuple[str, str, str] | None = None
    """SCH-6 in place of the change's own (the S14 of a confirmation: ``CONFIRMED``)."""


class ChangeNotifier(Protocol):
    """Queues the SIU of a change to the destinations that got the S12 (radsched.emr)."""

    async def on_changed(self, conn: Connection, change: AppointmentChanged) -> None: ...


class PatientNews(Protocol):
    """Texts the patient of an appointment booked by text about a change made at the RIS
    (radsched.sms; issue 13 item 4), in the transaction that records the change."""

    async def on_ris_change(self, conn: Connection, phone: str, news: AppointmentNews) -> None: ...


class SlotLookup(Protocol):
    """The scheduling service's view of open slots (known from listings, else asked of the RIS)."""

    async def find_slot(self, slot_id: str, location_id: str, modality: str) -> Slot: ...

    def slot_changed(self, slot_id: str, location_id: str) -> None: ...


EventListener = Callable[[Connection, str, str], Awaitable[None]]
"""Called with (connection, appointment id, event kind) inside the event's transaction."""


class BookedLike(Protocol):
    @property
    def booking_id(self) -> uuid.UUID: ...
    @property
    def order(self) -> OrderRef: ...
    @property
    def appointment(self) -> channels.Appointment: ...


@dataclass
class LifecycleMetrics:
    """Counters the daemon registers (radsched/metrics.py); no-ops until bound."""

    changes: Callable[[str, str, str], None] = lambda kind, origin, outcome: None
    """(cancel|reschedule|ris_cancel|ris_reschedule|..., rest|sms|cli|ris, done|refused|...)"""


class Lifecycle:
    def __init__(
        self,
        *,
        db: Database,
        orders: OrderStore,
        ris: RisClient,
        dialect: Dialect,
        control_ids: ControlIds,
        phi: PhiBox,
        slots: SlotLookup,
        tz: tzinfo,
        clock: Clock,
        notifier: ChangeNotifier | None = None,
        news: PatientNews | None = None,
        match: Sequence[str] = ("filler", "placer"),
        metrics: LifecycleMetrics | None = None,
        confirm_siu: bool = False,
    ) -> None:
        self.dialect = dialect
        self.confirm_siu = confirm_siu
        self.tz = tz
        self.notifier = notifier
        self.news = news
        self.metrics = metrics or LifecycleMetrics()
        self._db = db
        self._orders = orders
        self._ris = ris
        self._ids = control_ids
        self._phi = phi
        self._slots = slots
        self._clock = clock
        self._match = tuple(match)
        self._inflight: dict[uuid.UUID, asyncio.Task[ChangeOutcome]] = {}
        self._listeners: list[EventListener] = []

    def add_event_listener(self, listener: EventListener) -> None:
        """Run ``listener(conn, appointment_id, kind)`` in the transaction of every event of the record
        (booked, rescheduled, modified, cancelled, deleted, noshow), whichever path made it: our cancel and
        reschedule, an SIU or an ORM cancel from the RIS. The SMS reminders stop there (issue 13)."""
        self._listeners.append(listener)

    async def _event(
        self,
        conn: Connection,
        appointment_id: str,
        kind: store.EventKind,
        origin: str,
        *,
        start_at: datetime | None,
        previous_start: datetime | None = None,
        now: datetime,
    ) -> None:
        await store.add_event(
            conn,
            appointment_id,
            kind,
            origin,
            start_at=start_at,
            previous_start=previous_start,
            now=now,
        )
        for listener in self._listeners:
            await listener(conn, appointment_id, kind)

    # ---- the record ---------------------------------------------------------------------------------------

    @staticmethod
    def _aad(appointment_id: str) -> bytes:
        return b"appointment:" + appointment_id.encode()

    async def record_booked(
        self, conn: Connection, booked: BookedLike, *, origin: str, order_key: str
    ) -> None:
        """The booking hook (after the EMR hook, so the S12 destinations are known).

        The sealed identifiers include the number the patient was texted at (when the order had one), for
        the reminders and "your appointment moved" texts of the SMS side; it goes with the rest."""
        appt = booked.appointment
        stored = await self._orders.get_by_key(conn, order_key)
        phone = stored.phone if stored is not None else None
        sealed = self._phi.seal(_seal_payload(booked.order, phone), aad=self._aad(appt.id))
        now = self._clock()
        new = store.NewAppointment(
            appointment_id=appt.id,
            filler_appointment_id=appt.filler_appointment_id,
            order_key=order_key,
            booking_id=booked.booking_id,
            slot_id=appt.slot.id,
            location_id=appt.slot.location_id,
            modality=appt.slot.modality,
            start_at=appt.slot.start,
            duration_minutes=appt.slot.duration_minutes,
            origin="sms" if origin == "sms" else "rest",
            confirmation_code=appt.confirmation_code,
            dialect=self.dialect.name,
            phi=sealed,
            phi_expires_at=appt.slot.start + PHI_AFTER_START,
            # Replies to the patient's texts (1 confirm, 3 cancel) find the appointment by this.
            phone_hash=self._orders.hash_phone(phone) if origin == "sms" and phone else None,
        )
        if await store.insert(conn, new, now=now):
            await self._event(
                conn, appt.id, "booked", new.origin, start_at=appt.slot.start, now=now
            )

    async def get(self, appointment_id: str) -> AppointmentView:
        async with self._db.transaction("appointments.get") as conn:
            row = await store.get(conn, appointment_id)
        if row is None:
            raise UnknownAppointment(f"no appointment {appointment_id!r}")
        return AppointmentView.of(row)

    async def patient(
        self, conn: Connection, row: AppointmentRow
    ) -> tuple[OrderRef, str | None] | None:
        """The patient identifiers and the number to text (the SMS side, issue 13), while they are kept."""
        if row.phi is None:
            return None
        return _unseal(self._phi.open(row.phi, aad=self._aad(row.appointment_id)))

    async def _patient(self, conn: Connection, row: AppointmentRow) -> OrderRef | None:
        """The patient identifiers sealed in the record, else (booked before 0008) in the order."""
        if row.phi is not None:
            order, _phone = _unseal(self._phi.open(row.phi, aad=self._aad(row.appointment_id)))
            return order
        if row.order_key is not None:
            stored = await self._orders.get_by_key(conn, row.order_key)
            if stored is not None:
                return stored.order
        return None

    def _as_channels(self, row: AppointmentRow, order: OrderRef) -> channels.Appointment:
        return channels.Appointment(
            id=row.appointment_id,
            order_id=order.order_id,
            slot=Slot(
                row.slot_id, row.location_id, row.modality, row.start_at, row.duration_minutes
            ),
            location=Location(row.location_id, "", "", (row.modality,)),
            procedure_code=order.procedure_code,
            procedure_text=order.procedure_text,
            procedure_system=order.procedure_system,
            filler_appointment_id=row.filler_appointment_id or "",
            confirmation_code=row.confirmation_code or "",
        )

    # ---- cancel and reschedule, asked of the RIS -----------------------------------------------------------

    async def cancel(
        self, appointment_id: str, *, origin: ChangeOrigin, reason: str = ""
    ) -> ChangeOutcome:
        with correlated(correlation_id.get() or uuid.uuid4().hex[:16]):
            return await self._change(appointment_id, ChangeKind.CANCEL, origin, None, reason)

    async def reschedule(
        self,
        appointment_id: str,
        slot_id: str,
        *,
        origin: ChangeOrigin,
        location_id: str | None = None,
    ) -> ChangeOutcome:
        """Move to ``slot_id``, at the appointment's location unless ``location_id`` names another
        (a move by text after the patient chose another location)."""
        with correlated(correlation_id.get() or uuid.uuid4().hex[:16]):
            return await self._change(
                appointment_id, ChangeKind.RESCHEDULE, origin, slot_id, "", location_id=location_id
            )

    async def _change(
        self,
        appointment_id: str,
        kind: ChangeKind,
        origin: ChangeOrigin,
        slot_id: str | None,
        reason: str,
        *,
        location_id: str | None = None,
    ) -> ChangeOutcome:
        async with self._db.transaction("appointments.change_lookup") as conn:
            row = await store.get(conn, appointment_id)
            if row is None:
                if await store.pending_booking_for(conn, appointment_id):
                    raise ChangeConflict("the appointment is still being booked; try again shortly")
                raise UnknownAppointment(f"no appointment {appointment_id!r}")
            pending = await store.pending_change(conn, appointment_id)
            previous = await store.latest_change(conn, appointment_id, kind.value, slot_id=slot_id)
        replay = self._replay(row, kind, slot_id, previous)
        if replay is not None:
            self.metrics.changes(kind.value, origin, "replayed")
            return replay
        if pending is not None:
            if pending.kind == kind.value and pending.slot_id == slot_id:
                return await self._settle(pending, reason)  # the same request again: resolve it
            raise ChangeConflict(f"a {pending.kind} of this appointment is waiting for the RIS")
        if row.ended:
            raise ChangeConflict(f"the appointment is {row.status}")
        slot: Slot | None = None
        if slot_id is not None:
            slot = await self._slots.find_slot(
                slot_id, location_id or row.location_id, row.modality
            )
        async with self._db.transaction("appointments.change_insert") as conn:
            # Under the appointment's row lock (which settling a change also takes) the check is
            # repeated: a concurrent identical request may have finished since the lookup above.
            locked = await store.get(conn, appointment_id, for_update=True)
            if locked is None:
                raise UnknownAppointment(f"no appointment {appointment_id!r}")
            latest = await store.latest_change(conn, appointment_id, kind.value, slot_id=slot_id)
            replay = self._replay(locked, kind, slot_id, latest)
            if replay is not None:
                self.metrics.changes(kind.value, origin, "replayed")
                return replay
            if locked.ended:
                raise ChangeConflict(f"the appointment is {locked.status}")
            change = await store.insert_change(
                conn,
                store.NewChange(
                    appointment_id=appointment_id,
                    kind="cancel" if kind is ChangeKind.CANCEL else "reschedule",
                    origin=origin,
                    control_id=self._ids.fresh(),
                    correlation_id=correlation_id.get() or "-",
                    slot_id=slot.id if slot else None,
                    location_id=slot.location_id if slot else None,
                    start_at=slot.start if slot else None,
                    duration_minutes=slot.duration_minutes if slot else None,
                    request_reason=reason,
                ),
                now=self._clock(),
            )
            if change is None:  # a concurrent request inserted first: join it if it is the same
                change = await store.pending_change(conn, appointment_id)
            if change is None or change.kind != kind.value or change.slot_id != slot_id:
                raise ChangeConflict("another change of this appointment is waiting for the RIS")
        log.info(
            "appointment change",
            extra={
                "appointment_id": appointment_id,
                "kind": kind.value,
                "control_id": change.control_id,
            },
        )
        return await self._settle(change, reason)

    def _replay(
        self, row: AppointmentRow, kind: ChangeKind, slot_id: str | None, previous: ChangeRow | None
    ) -> ChangeOutcome | None:
        """A repeat of a change already done answers the same, without HL7."""
        view = AppointmentView.of(row)
        if kind is ChangeKind.CANCEL and row.status == "cancelled":
            return ChangeOutcome(view, kind, replayed=True)
        if (
            kind is ChangeKind.RESCHEDULE
            and previous is not None
            and previous.state == "done"
            and row.slot_id == slot_id
        ):
            return ChangeOutcome(view, kind, replayed=True)
        return None

    async def _settle(self, change: ChangeRow, reason: str) -> ChangeOutcome:
        task = self._inflight.get(change.id)
        if task is None:
            task = spawn(self._send(change, reason), name="ris-change", awaited=True)
            self._inflight[change.id] = task
            task.add_done_callback(lambda done: self._finished(change.id, done))
        return await asyncio.shield(task)

    def _finished(self, change_id: uuid.UUID, task: asyncio.Task[ChangeOutcome]) -> None:
        if self._inflight.get(change_id) is task:
            del self._inflight[change_id]
        if not task.cancelled():
            task.exception()

    async def _send(self, change: ChangeRow, reason: str) -> ChangeOutcome:
        # A re-sent request (resolver, repeat) must be the same message: the reason recorded with it.
        reason = change.request_reason or reason
        kind = ChangeKind.CANCEL if change.kind == "cancel" else ChangeKind.RESCHEDULE
        async with self._db.transaction("appointments.change_load") as conn:
            row = await store.get(conn, change.appointment_id)
            order = await self._patient(conn, row) if row is not None else None
        if row is None or order is None:
            await self._close(
                change, "failed", None, "the appointment's patient identifiers are gone"
            )
            raise ChangeConflict("the appointment is past: its record no longer names the patient")
        appointment = self._as_channels(row, order)
        if kind is ChangeKind.CANCEL:
            out = self._ids.build_with(
                change.control_id,
                lambda: self.dialect.build_cancel(appointment, order, reason=reason),
            )
        else:
            assert change.slot_id and change.location_id and change.start_at
            assert change.duration_minutes
            new_slot = Slot(
                change.slot_id,
                change.location_id,
                row.modality,
                change.start_at,
                change.duration_minutes,
            )
            out = self._ids.build_with(
                change.control_id,
                lambda: self.dialect.build_reschedule(appointment, order, new_slot),
            )
        result: ChangeResult = await self._ris.exchange(
            out, self.dialect.parse_change_response, lambda r: r.ack_code.value
        )
        if result.accepted:
            return await self._apply_accepted(change, kind, order, result, reason)
        final = result.ack_code.value != "AR"
        await self._close(change, "refused" if final else "failed", result, result.reason)
        self.metrics.changes(kind.value, change.origin, "refused" if final else "failed")
        log.info(
            "appointment change refused by the RIS",
            extra={"appointment_id": change.appointment_id, "ack": result.ack_code.value},
        )
        raise ChangeRefused(f"the RIS refused the {kind.value}: {result.reason}")

    async def _close(
        self, change: ChangeRow, state: store.ChangeState, result: ChangeResult | None, reason: str
    ) -> None:
        async with self._db.transaction("appointments.change_refused") as conn:
            await store.settle_change(
                conn,
                change.id,
                state=state,
                ack_code=result.ack_code.value if result else None,
                order_control=(result.order_control or None) if result else None,
                reason=reason,
                now=self._clock(),
            )

    async def _apply_accepted(
        self,
        change: ChangeRow,
        kind: ChangeKind,
        order: OrderRef,
        result: ChangeResult,
        reason: str,
    ) -> ChangeOutcome:
        now = self._clock()
        async with self._db.transaction("appointments.change_done") as conn:
            current = await store.get_change(conn, change.id, for_update=True)
            row = await store.get(conn, change.appointment_id, for_update=True)
            assert current is not None and row is not None
            if current.state == "done":  # settled by another daemon meanwhile
                return ChangeOutcome(AppointmentView.of(row), kind, replayed=True)
            code = confirmation_code() if kind is ChangeKind.RESCHEDULE else None
            await store.settle_change(
                conn,
                change.id,
                state="done",
                ack_code=result.ack_code.value,
                order_control=result.order_control or None,
                reason=None,
                confirmation_code=code,
                now=now,
            )
            if kind is ChangeKind.CANCEL:
                after = await self._notify(conn, row, order, kind, reason=reason)
                after = await store.set_status(
                    conn, row.appointment_id, status="cancelled", changed_by=change.origin, now=now
                )
                await self._event(
                    conn,
                    row.appointment_id,
                    "cancelled",
                    change.origin,
                    start_at=row.start_at,
                    now=now,
                )
            else:
                assert change.start_at is not None and change.duration_minutes is not None
                after = await store.move(
                    conn,
                    row.appointment_id,
                    slot_id=change.slot_id or row.slot_id,
                    location_id=change.location_id or row.location_id,
                    start_at=change.start_at,
                    duration_minutes=change.duration_minutes,
                    filler_appointment_id=result.filler_appointment_id,
                    confirmation_code=code,
                    changed_by=change.origin,
                    phi_expires_at=change.start_at + PHI_AFTER_START,
                    now=now,
                )
                await self._notify(conn, after, order, kind, reason=reason)
                await self._event(
                    conn,
                    row.appointment_id,
                    "rescheduled",
                    change.origin,
                    start_at=after.start_at,
                    previous_start=row.start_at,
                    now=now,
                )
        self._slots.slot_changed(row.slot_id, row.location_id)
        if change.slot_id:
            self._slots.slot_changed(change.slot_id, change.location_id or row.location_id)
        self.metrics.changes(kind.value, change.origin, "done")
        log.info(
            "appointment changed",
            extra={
                "appointment_id": row.appointment_id,
                "kind": kind.value,
                "control_id": change.control_id,
            },
        )
        return ChangeOutcome(AppointmentView.of(after), kind, replayed=False)

    async def _notify(
        self,
        conn: Connection,
        row: AppointmentRow,
        order: OrderRef,
        kind: ChangeKind,
        *,
        reason: str,
        event: tuple[str, str, str] | None = None,
    ) -> AppointmentRow:
        """Queue the SIU of ``kind`` to the S12's destinations (before the PHI of a cancel is erased)."""
        if self.notifier is not None and row.emr_destinations:
            await self.notifier.on_changed(
                conn,
                AppointmentChanged(
                    self._as_channels(row, order),
                    order,
                    kind,
                    row.emr_destinations,
                    reason,
                    event,
                ),
            )
        return row

    # ---- the patient confirmed (reply 1) -------------------------------------------------------------------

    async def confirmed(self, conn: Connection, appointment_id: str) -> bool:
        """The patient confirmed by text (issue 13 item 2), in the reply's transaction: when the site turns
        it on (``[appointments] confirm_siu``), an SIU^S14 to the S12's destinations with the confirmation in
        SCH-6 (``CONFIRMED^Confirmed by the patient^L``; SCH-25 stays ``Booked``: table 0278 has no
        "Confirmed"), behind the S12 in the same FIFO outbox. False when nothing was queued (off, ended,
        no EMR destination, or the patient identifiers for PID are gone)."""
        if not self.confirm_siu or self.notifier is None:
            return False
        row = await store.get(conn, appointment_id, for_update=True)
        if row is None or row.ended or not row.emr_destinations:
            return False
        order = await self._patient(conn, row)
        if order is None:
            return False
        await self._notify(conn, row, order, ChangeKind.MODIFY, reason="", event=CONFIRMED_EVENT)
        log.info("confirmation queued to the EMRs", extra={"appointment_id": appointment_id})
        return True

    # ---- pending changes left by a crash or a silent RIS ------------------------------------------------------

    async def resolve_pending(self, *, untouched_for: timedelta = timedelta(0)) -> int:
        now = self._clock()
        async with self._db.transaction("appointments.changes_pending") as conn:
            rows = await store.pending_changes(conn, untouched_since=now - untouched_for)
        resolved = 0
        for change in rows:
            with correlated(change.correlation_id):
                if now - change.created_at > GIVE_UP_AFTER:
                    await self._close(change, "failed", None, "unresolved: the RIS never answered")
                    continue
                try:
                    await self._settle(change, "")
                    resolved += 1
                except ChangeRefused:
                    resolved += 1
                except SchedulingError as exc:
                    log.warning(
                        "pending appointment change still unresolved",
                        extra={"control_id": change.control_id, "why": exc.code},
                    )
        return resolved

    async def run_resolver(self, started_at: datetime) -> None:
        first = True
        while True:
            try:
                untouched = (
                    self._clock() - started_at
                    if first
                    else timedelta(seconds=self._ris.timeout + RESOLVE_INTERVAL_S)
                )
                await self.resolve_pending(untouched_for=untouched)
            except Exception:  # a background loop: log, keep going
                log.exception("resolving pending appointment changes failed")
            first = False
            await asyncio.sleep(RESOLVE_INTERVAL_S)

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()

    # ---- changes made by staff in the RIS ------------------------------------------------------------------

    async def apply_siu(self, conn: Connection, siu: SiuMessage) -> str:
        """Update a known appointment from an SIU the RIS sent (in the inbound transaction).

        Returns what happened (``changed``, ``unchanged``, ``unknown``, ``not_a_change``) for metrics/logs.
        The SIU itself is relayed by the caller as before; this does not queue another SIU to the EMRs.
        """
        if channels.is_no_show(siu):
            return await self._no_show(conn, siu)
        kind = channels.change_of_siu(siu)
        if kind is None:
            if siu.trigger == "S12":
                return await self._learn(conn, siu)
            return "not_a_change"
        row = await self._named_by(conn, siu)
        if row is None:
            self.metrics.changes(f"ris_{kind.value}", "ris", "ignored")
            return "unknown"
        if row.ended:
            return "unchanged"  # e.g. an S15 for an appointment we already cancelled
        now = self._clock()
        phone = await self._texted_phone(conn, row)
        if kind is ChangeKind.RESCHEDULE and siu.start is not None:
            if (
                siu.start == row.start_at
                and (siu.duration_minutes or row.duration_minutes) == row.duration_minutes
            ):
                return "unchanged"
            # The patient was texted a code for the old time; the new time gets its own.
            new_code = confirmation_code() if phone is not None else None
            await store.move(
                conn,
                row.appointment_id,
                slot_id=row.slot_id,
                location_id=siu.location_id or row.location_id,
                start_at=siu.start,
                duration_minutes=siu.duration_minutes or row.duration_minutes,
                filler_appointment_id=siu.filler_appointment_id,
                confirmation_code=new_code,
                changed_by="ris",
                phi_expires_at=siu.start + PHI_AFTER_START,
                now=now,
            )
            await self._event(
                conn,
                row.appointment_id,
                "rescheduled",
                "ris",
                start_at=siu.start,
                previous_start=row.start_at,
                now=now,
            )
            if phone is not None and new_code is not None:
                await self._tell(conn, phone, row, NewsKind.MOVED, start=siu.start, code=new_code)
        elif kind is ChangeKind.MODIFY:
            await store.set_status(
                conn, row.appointment_id, status=row.status, changed_by="ris", now=now
            )
            await self._event(
                conn, row.appointment_id, "modified", "ris", start_at=row.start_at, now=now
            )
        elif kind in (ChangeKind.CANCEL, ChangeKind.DELETE):
            status: store.Status = "cancelled" if kind is ChangeKind.CANCEL else "deleted"
            await store.set_status(
                conn, row.appointment_id, status=status, changed_by="ris", now=now
            )
            await self._event(
                conn, row.appointment_id, status, "ris", start_at=row.start_at, now=now
            )
            if phone is not None:
                await self._tell(conn, phone, row, NewsKind.CANCELLED, start=row.start_at)
        else:
            return "unchanged"
        self.metrics.changes(f"ris_{kind.value}", "ris", "done")
        log.info(
            "appointment changed at the RIS",
            extra={"appointment_id": row.appointment_id, "kind": kind.value},
        )
        return "changed"

    async def _named_by(self, conn: Connection, siu: SiuMessage) -> AppointmentRow | None:
        """The appointment an SIU from the RIS names (SCH-2 / SCH-1 as ``siu_match`` says), locked."""
        return await store.find_by_ids(
            conn,
            placer=siu.placer_appointment_id,
            filler=siu.filler_appointment_id,
            match=self._match,
        )

    async def _no_show(self, conn: Connection, siu: SiuMessage) -> str:
        """The RIS says the patient did not come (S26, or S14 with SCH-25 Noshow): a ``noshow`` event,
        once per appointment and start (a resent S26 adds nothing). The record itself is left as it is,
        so a later S13 from the RIS (the same appointment moved) is still followed; no text, no SIU."""
        row = await self._named_by(conn, siu)
        if row is None:
            self.metrics.changes("ris_noshow", "ris", "ignored")
            return "unknown"
        if row.ended:  # cancelled or deleted before: nothing was missed
            self.metrics.changes("ris_noshow", "ris", "ignored")
            return "unchanged"
        if await store.has_no_show(conn, row.appointment_id, start_at=row.start_at):
            self.metrics.changes("ris_noshow", "ris", "replayed")
            return "unchanged"
        await self._event(
            conn, row.appointment_id, "noshow", "ris", start_at=row.start_at, now=self._clock()
        )
        self.metrics.changes("ris_noshow", "ris", "done")
        log.info("no-show at the RIS", extra={"appointment_id": row.appointment_id})
        return "changed"

    async def _texted_phone(self, conn: Connection, row: AppointmentRow) -> str | None:
        """The number of a live appointment booked by text, read before a cancel erases it; None
        for appointments booked by other means (they get no text) or when nobody sends texts."""
        if self.news is None or row.origin != "sms" or row.ended:
            return None
        patient = await self.patient(conn, row)
        return patient[1] if patient is not None else None

    async def _tell(
        self,
        conn: Connection,
        phone: str,
        row: AppointmentRow,
        kind: NewsKind,
        *,
        start: datetime,
        code: str = "",
    ) -> None:
        assert self.news is not None
        await self.news.on_ris_change(conn, phone, AppointmentNews(kind, row.modality, start, code))

    async def _learn(self, conn: Connection, siu: SiuMessage) -> str:
        """An S12 from the RIS for an appointment we did not book: recorded with origin ``ris`` (no patient
        identifiers: the RIS's own later SIU are what reach the EMRs), so its changes and metrics follow."""
        known = await self._named_by(conn, siu)
        appointment_id = siu.placer_appointment_id or siu.filler_appointment_id
        if known is not None or not appointment_id or siu.start is None:
            return "unchanged"
        now = self._clock()
        new = store.NewAppointment(
            appointment_id=appointment_id,
            filler_appointment_id=siu.filler_appointment_id,
            order_key=None,
            booking_id=None,
            slot_id=siu.filler_appointment_id or appointment_id,
            location_id=siu.location_id,
            modality=siu.service_code,
            start_at=siu.start,
            duration_minutes=siu.duration_minutes or 1,
            origin="ris",
            confirmation_code="",
            dialect="",
            phi=None,
            phi_expires_at=siu.start + PHI_AFTER_START,
        )
        if await store.insert(conn, new, now=now):
            await self._event(conn, appointment_id, "booked", "ris", start_at=siu.start, now=now)
        return "learned"

    async def apply_order(self, conn: Connection, order: channels.Order, order_key: str) -> str:
        """An ORM CA/OC/DC from the RIS for an order whose appointment we booked cancels it: S15 to the EMRs
        that got the S12 (the ORM itself is not an SIU, so nothing else tells them)."""
        if channels.change_of_order(order) is not ChangeKind.CANCEL:
            return "not_a_change"
        row = await store.find_by_order(conn, order_key)
        if row is None:
            return "unknown"
        now = self._clock()
        patient = await self._patient(conn, row)
        phone = await self._texted_phone(conn, row)
        if patient is not None:
            await self._notify(conn, row, patient, ChangeKind.CANCEL, reason="Cancelled at the RIS")
        await store.set_status(
            conn, row.appointment_id, status="cancelled", changed_by="ris", now=now
        )
        await self._event(
            conn, row.appointment_id, "cancelled", "ris", start_at=row.start_at, now=now
        )
        if phone is not None:
            await self._tell(conn, phone, row, NewsKind.CANCELLED, start=row.start_at)
        self.metrics.changes("ris_cancel", "ris", "done")
        log.info(
            "appointment cancelled by an order cancel", extra={"appointment_id": row.appointment_id}
        )
        return "changed"
