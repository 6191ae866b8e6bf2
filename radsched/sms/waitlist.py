"""Earlier-slot offers, the waitlist (issue 13 item 5): the SMS side.

Three ties, each in someone else's transaction where it can be:

* **replies** (:meth:`Waitlist.on_reply`, from :meth:`SmsEngine.on_inbound_text` once the phone's
  conversation is over): ``W`` joins or leaves, NO passes the live offer to the next patient, YES marks
  it ``accepting`` and — after commit, outside any transaction — asks the lifecycle to reschedule to
  the offered slot (:meth:`Waitlist.accept`); STOP leaves (:meth:`Waitlist.on_opted_out`);
* **offering** is an appointment-event listener: a cancel or deletion (any path: our cancel, the RIS's
  SIU or ORM) offers the freed slot, in the cancel's transaction, to the first waiting patient in order
  of joining; the offer row is the claim (a unique partial index: one live offer per slot, one per
  phone), and the text is queued beside it. A reschedule that lands an ``accepting`` offer's
  appointment on its slot is the fill: the "moved, new code" text is queued in the reschedule's
  transaction, whichever retry (ours, the lifecycle's resolver) got the RIS's answer;
* **holds** run out on the injected clock (a :class:`ConversationTimer` on the offers' ``hold_until``):
  the expired offer is settled and the slot offered to the next patient, in one transaction.

No number is kept here: offers are texted to the number sealed in the appointment record (kept until
one day after the start, erased at a cancel), and the entries end with their appointment.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Literal, Protocol

from prometheus_client import CollectorRegistry, Counter

from radsched.conversation.after_booking import Booked
from radsched.conversation.config import ConversationConfig
from radsched.conversation.model import Command, ConsentStatus, SendText
from radsched.conversation.waitlist import (
    Candidate,
    Outcome,
    Vacancy,
    WaitlistReply,
    next_candidate,
    offer_text,
    outcome_commands,
    toggle_commands,
)
from radsched.logs import correlation_id
from radsched.privacy import PhiBox
from radsched.scheduling.errors import RisFailed, RisTimeout, RisUnavailable, SchedulingError
from radsched.sms.driver import Driver
from radsched.sms.timer import ConversationTimer, start_sweep
from radsched.storage import appointments
from radsched.storage import waitlist as store
from radsched.storage.appointments import AppointmentRow
from radsched.storage.audit import AuditTrail
from radsched.storage.consents import get_consent
from radsched.storage.conversations import phone_state
from radsched.storage.db import Database
from radsched.storage.pg import Connection
from radsched.storage.sms_outbox import enqueue_text

__all__ = ["Waitlist"]

log = logging.getLogger("radsched.sms.waitlist")

SWEEP_BATCH = 100
_FREEING = frozenset({"cancelled", "deleted"})
_CONSENT: dict[str | None, ConsentStatus] = {
    "granted": ConsentStatus.GRANTED,
    "revoked": ConsentStatus.REVOKED,
}
# An 'accepting' offer whose reschedule never came back (the RIS silent past the lifecycle's own
# retries) is closed after this, so the entry is offered other slots again.
ACCEPT_GIVE_UP = timedelta(days=1)


class WaitlistLifecycle(Protocol):
    """What the waitlist needs of radsched.scheduling.lifecycle.Lifecycle."""

    async def reschedule(
        self, appointment_id: str, slot_id: str, *, origin: Literal["sms"], location_id: str
    ) -> object: ...

    async def patient(
        self, conn: Connection, row: AppointmentRow
    ) -> tuple[object, str | None] | None: ...


class Waitlist:
    def __init__(
        self,
        *,
        db: Database,
        driver: Driver,
        phi: PhiBox,
        lifecycle: WaitlistLifecycle,
        clock: Callable[[], datetime],
        hold: timedelta,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._db = db
        self._driver = driver
        self._phi = phi
        self._lifecycle = lifecycle
        self._clock = clock
        self.hold = hold
        self._timer: ConversationTimer | None = None
        self._events = Counter(
            "radsched_waitlist",
            "Waitlist events: joined, left; offers offered, accepting, taken, declined, expired, "
            "unavailable (the RIS refused).",
            ["event"],
            registry=registry,
        )

    # ---- replies --------------------------------------------------------------------------------------

    async def live_offer(self, conn: Connection, phone_hash: str) -> store.Offer | None:
        return await store.live_offer_for_phone(conn, phone_hash)

    async def on_reply(
        self,
        conn: Connection,
        reply: WaitlistReply,
        upcoming: Sequence[AppointmentRow],
        *,
        phone: str,
        phone_hash: str,
        correlation: str,
    ) -> store.Offer | None:
        """Record the reply (in the inbound text's transaction); return the offer to accept after
        commit (YES), else None."""
        now = self._clock()
        consent = await get_consent(conn, phone_hash)
        trail = AuditTrail(phone_hash, None, correlation, None, consent.value)
        trail.add(reply.value, "inbound")
        commands: list[Command] = []
        accept: store.Offer | None = None
        if reply is WaitlistReply.TOGGLE:
            commands = await self._toggle(conn, upcoming, phone_hash=phone_hash, now=now)
            trail.modality = upcoming[0].modality if upcoming else None
        else:
            offer = await store.live_offer_for_phone(conn, phone_hash, for_update=True)
            if offer is not None:
                trail.modality = offer.modality
            if offer is None or offer.state != "offered":
                trail.add("waitlist_reply_ignored", "system", offer.state if offer else "none")
            elif reply is WaitlistReply.TAKE:
                await self._settle(conn, offer.id, "accepting", now)
                trail.add("waitlist_accepting", "system")
                accept = offer
            else:
                await self._settle(conn, offer.id, "declined", now)
                row = await appointments.get(conn, offer.appointment_id)
                if row is not None:
                    commands = outcome_commands(
                        Outcome.KEPT, booked=Booked(row.modality, row.start_at), cfg=self._cfg
                    )
                await self._advance(conn, offer.vacancy, self._vacancy(offer), offer.slot_id, now)
        await self._driver.perform_outside(
            conn, commands, trail=trail, phone=phone, now=now, modality=trail.modality
        )
        return accept

    async def _settle(
        self, conn: Connection, offer_id: int, state: store.OfferState, now: datetime
    ) -> None:
        await store.settle_offer(conn, offer_id, state=state, now=now)
        self._events.labels(state).inc()

    async def _toggle(
        self,
        conn: Connection,
        upcoming: Sequence[AppointmentRow],
        *,
        phone_hash: str,
        now: datetime,
    ) -> list[Command]:
        ids = [row.appointment_id for row in upcoming]
        first = Booked(upcoming[0].modality, upcoming[0].start_at)
        if await store.waiting_for_appointments(conn, ids):
            await self._leave(conn, now, appointment_ids=ids)
            self._events.labels("left").inc()
            return toggle_commands(joined=False, booked=first, cfg=self._cfg)
        for row in upcoming:
            await store.join(
                conn,
                appointment_id=row.appointment_id,
                location_id=row.location_id,
                modality=row.modality,
                phone_hash=phone_hash,
                now=now,
            )
        self._events.labels("joined").inc()
        log.info("joined the waitlist", extra={"appointments": len(ids)})
        return toggle_commands(joined=True, booked=first, cfg=self._cfg)

    async def on_opted_out(self, conn: Connection, phone_hash: str) -> None:
        """STOP: off the waitlist; a live offer passes to the next patient (no text to this phone)."""
        await self._leave(conn, self._clock(), phone_hash=phone_hash)

    async def _leave(
        self,
        conn: Connection,
        now: datetime,
        *,
        appointment_ids: list[str] | None = None,
        phone_hash: str | None = None,
        state: Literal["left", "ended"] = "left",
    ) -> None:
        ended = await store.end_entries(
            conn, state=state, now=now, appointment_ids=appointment_ids, phone_hash=phone_hash
        )
        if not ended:
            return
        for offer in await store.close_vacancy_entries(conn, ended):
            await self._settle(conn, offer.id, "declined", now)
            await self._advance(conn, offer.vacancy, self._vacancy(offer), offer.slot_id, now)

    async def accept(self, offer: store.Offer, *, phone: str, correlation: str) -> None:
        """YES, after commit: the lifecycle's reschedule to the offered slot. The fill itself is
        recorded by :meth:`on_event` in the reschedule's transaction; here only a refusal."""
        try:
            await self._lifecycle.reschedule(
                offer.appointment_id, offer.slot_id, origin="sms", location_id=offer.location_id
            )
            return
        except (RisUnavailable, RisTimeout, RisFailed) as exc:
            # Outcome unknown: the lifecycle re-sends the change; its answer fills or not.
            log.warning("waitlist reschedule outcome unknown", extra={"code": exc.code})
            return
        except SchedulingError as exc:  # 409: refused by the RIS, slot gone, another change
            why = exc.code
        now = self._clock()
        async with self._db.transaction("waitlist.refused") as conn:
            current = await store.live_offer_for_phone(conn, offer.phone_hash, for_update=True)
            if current is None or current.id != offer.id or current.state != "accepting":
                return  # settled meanwhile (the reschedule's event)
            row = await appointments.get(conn, offer.appointment_id)
            if row is None or row.ended:
                # The patient's own appointment went meanwhile: the slot is still free for the next.
                await self._settle(conn, offer.id, "declined", now)
                await self._advance(conn, offer.vacancy, self._vacancy(offer), offer.slot_id, now)
                return
            await self._settle(conn, offer.id, "unavailable", now)
            consent = await get_consent(conn, offer.phone_hash)
            trail = AuditTrail(offer.phone_hash, None, correlation, offer.modality, consent.value)
            trail.add("waitlist_unavailable", "system", why)
            commands = (
                outcome_commands(
                    Outcome.GONE, booked=Booked(row.modality, row.start_at), cfg=self._cfg
                )
                if consent is ConsentStatus.GRANTED
                else []
            )
            await self._driver.perform_outside(
                conn, commands, trail=trail, phone=phone, now=now, modality=offer.modality
            )
        log.info("waitlist offer refused at the RIS", extra={"offer": offer.id, "why": why})

    async def resume_accepting(self) -> int:
        """Ask again for every move a YES started that a previous process left unanswered (a crash
        between the YES's commit and the RIS's answer). The lifecycle's reschedule is idempotent on
        (appointment, slot): a change already sent is settled, not sent twice."""
        async with self._db.transaction("waitlist.resume") as conn:
            offers = await store.accepting(conn)
            phones = []
            for offer in offers:
                row = await appointments.get(conn, offer.appointment_id)
                phones.append(await self._phone(conn, row) if row is not None else None)
        for offer, phone in zip(offers, phones, strict=True):
            await self.accept(offer, phone=phone or "", correlation=uuid.uuid4().hex[:16])
        return len(offers)

    # ---- offering: an appointment-event listener -------------------------------------------------------

    async def on_event(self, conn: Connection, appointment_id: str, kind: str) -> None:
        """A cancel or deletion (any path) offers the freed slot; a reschedule onto an accepting
        offer's slot fills it. In a savepoint: the waitlist never undoes the change it follows."""
        if kind not in _FREEING and kind != "rescheduled":
            return
        try:
            async with conn.transaction():
                row = await appointments.get(conn, appointment_id)
                if row is None:
                    return
                if kind == "rescheduled":
                    await self._filled(conn, row)
                else:
                    await self._freed(conn, row)
        except Exception:
            log.exception("waitlist not updated", extra={"appointment_id": appointment_id})

    async def _freed(self, conn: Connection, row: AppointmentRow) -> None:
        now = self._clock()
        # The cancelled appointment's own place on the list ends (its offer passes on).
        await self._leave(conn, now, appointment_ids=[row.appointment_id], state="ended")
        vacancy = Vacancy(row.start_at, row.location_id, row.modality)
        await self._advance(conn, row.appointment_id, vacancy, row.slot_id, now)

    async def _filled(self, conn: Connection, row: AppointmentRow) -> None:
        entry = await store.entry_of_appointment(conn, row.appointment_id)
        if entry is None:
            return
        offer = await store.live_offer_of_entry(conn, entry)
        if offer is None or offer.state != "accepting" or offer.slot_id != row.slot_id:
            return  # moved some other way: the entry keeps waiting, from the new time
        now = self._clock()
        await self._settle(conn, offer.id, "taken", now)
        await store.end_entries(conn, state="filled", now=now, entry_id=entry)
        phone = await self._phone(conn, row)
        consent = await get_consent(conn, offer.phone_hash)
        trail = AuditTrail(
            offer.phone_hash, None, correlation_id.get() or "-", row.modality, consent.value
        )
        commands = outcome_commands(
            Outcome.TAKEN,
            booked=Booked(row.modality, row.start_at),
            cfg=self._cfg,
            code=row.confirmation_code or "",
        )
        if phone is None or consent is not ConsentStatus.GRANTED:
            commands = [c for c in commands if not isinstance(c, SendText)]
        await self._driver.perform_outside(
            conn, commands, trail=trail, phone=phone or "", now=now, modality=row.modality
        )
        log.info("waitlist slot filled", extra={"offer": offer.id})

    async def _advance(
        self, conn: Connection, vacancy_id: str, vacancy: Vacancy, slot_id: str, now: datetime
    ) -> bool:
        """Offer the vacancy to the next waiting patient; False when nobody (or it is closed)."""
        if await store.vacancy_closed(conn, vacancy_id):
            return False
        skipped: set[int] = set(await store.offered_entries(conn, vacancy_id))
        entries = await store.waiting_entries(
            conn,
            location_id=vacancy.location_id,
            modality=vacancy.modality,
            later_than=vacancy.slot_start,
            exclude_vacancy=vacancy_id,
        )
        candidates = [await self._candidate(conn, entry) for entry in entries]
        by_id = {entry.id: entry for entry in entries}
        while True:
            chosen = next_candidate(
                vacancy, candidates, offered_before=skipped, now=now, hold=self.hold
            )
            if chosen is None:
                return False
            skipped.add(chosen.entry_id)
            entry = by_id[chosen.entry_id]
            row = await appointments.get(conn, entry.appointment_id)
            phone = await self._phone(conn, row) if row is not None else None
            if phone is None:
                await store.end_entries(conn, state="ended", now=now, entry_id=entry.id)
                continue
            hold_until = now + self.hold
            offer_id = await store.offer(
                conn,
                vacancy=vacancy_id,
                slot_id=slot_id,
                location_id=vacancy.location_id,
                modality=vacancy.modality,
                slot_start=vacancy.slot_start,
                entry=entry,
                now=now,
                hold_until=hold_until,
            )
            if offer_id is None:
                if await store.vacancy_closed(conn, vacancy_id):
                    return False  # another transaction's claim on the slot won
                continue  # this phone got another slot's offer meanwhile
            await self._text_offer(conn, vacancy, entry, phone, now=now, hold_until=hold_until)
            if self._timer is not None:
                self._timer.deadline(hold_until)
            self._events.labels("offered").inc()
            log.info("waitlist slot offered", extra={"offer": offer_id})
            return True

    async def _candidate(self, conn: Connection, entry: store.Entry) -> Candidate:
        consent, busy = await phone_state(conn, entry.phone_hash)
        live = await store.live_offer_for_phone(conn, entry.phone_hash)
        return Candidate(
            entry_id=entry.id,
            joined_at=entry.joined_at,
            location_id=entry.location_id,
            modality=entry.modality,
            appointment_start=entry.appointment_start,
            phone_hash=entry.phone_hash,
            consent=_CONSENT.get(consent, ConsentStatus.UNKNOWN),
            phone_has_live_offer=live is not None,
            phone_busy=busy,
        )

    async def _text_offer(
        self,
        conn: Connection,
        vacancy: Vacancy,
        entry: store.Entry,
        phone: str,
        *,
        now: datetime,
        hold_until: datetime,
    ) -> None:
        text = offer_text(vacancy, self._cfg)
        correlation = uuid.uuid4().hex[:16]
        await enqueue_text(
            conn,
            phi=self._phi,
            to_e164=phone,
            body=text.text,
            template_id=text.template_id.value,
            phone_hash=entry.phone_hash,
            conversation_id=None,
            correlation_id=correlation,
            now=now,
            not_after=hold_until,  # an offer the hold outlived is never delivered
        )
        trail = AuditTrail(entry.phone_hash, None, correlation, entry.modality, "granted")
        trail.add(text.template_id.value, "outbound", "queued")
        await trail.flush(conn, now)

    async def _phone(self, conn: Connection, row: AppointmentRow) -> str | None:
        patient = await self._lifecycle.patient(conn, row)
        return patient[1] if patient is not None else None

    @staticmethod
    def _vacancy(offer: store.Offer) -> Vacancy:
        return Vacancy(offer.slot_start, offer.location_id, offer.modality)

    @property
    def _cfg(self) -> ConversationConfig:
        return self._driver.cfg

    # ---- holds: the sweep ------------------------------------------------------------------------------

    def start_sweep(self, stack: AsyncExitStack) -> None:
        self._timer = start_sweep(
            stack, self._db, self._clock, self.sweep, next_due=store.next_hold_end, name="waitlist"
        )

    def wake(self) -> None:
        """Look for holds that ran out now (tests that move the clock; the timer looks every 30 s)."""
        if self._timer is not None:
            self._timer.wake()

    async def sweep(self) -> int:
        """Settle every offer whose hold ran out and offer its slot to the next patient."""
        settled = 0
        while True:
            now = self._clock()
            async with self._db.transaction("waitlist.sweep") as conn:
                expired = await store.claim_expired(
                    conn, now=now, stale_before=now - ACCEPT_GIVE_UP, limit=SWEEP_BATCH
                )
                for offer in expired:
                    # A stale 'accepting' offer closes the slot (the RIS may have it); a hold
                    # that ran out passes it on.
                    stale = offer.state == "accepting"
                    await self._settle(conn, offer.id, "unavailable" if stale else "expired", now)
                    if not stale:
                        await self._advance(
                            conn, offer.vacancy, self._vacancy(offer), offer.slot_id, now
                        )
            settled += len(expired)
            if len(expired) < SWEEP_BATCH:
                break
        return settled
