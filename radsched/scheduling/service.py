"""Scheduling use cases: locations for a modality, open slots, and booking a slot for an order.

Every use case is one HL7 round trip through the site dialect on the one RIS connection (:mod:`.client`).
The REST facade and the SMS conversation driver both call this service; neither sees HL7.

Booking is idempotent on (order id, slot id) and survives crashes:

1. The ``bookings`` row (state ``pending``, our control id and appointment id, the slot's time) is
   committed before the HL7 booking leaves.
2. The same request again returns the stored outcome: ``booked`` → the same confirmation
   (``replayed=True``), ``rejected`` → 409 again, without a second HL7 booking.
3. A ``pending`` row (the RIS did not answer, or we crashed between send and reply) is resolved by
   re-sending the booking with the SAME control id: the RIS de-duplicates on MSH-10 and answers with its
   original reply, so the appointment is never booked twice. That happens on the next request for the same
   order and slot, and in the background on start-up and every ``RESOLVE_INTERVAL_S`` (:meth:`run_resolver`).
4. Booking hooks (SIU^S12 outbox, ...) run inside the transaction that marks the row ``booked``, once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from typing import Literal

import channels
from channels import BookingResult, Dialect, Location, Slot
from radsched.logs import correlated
from radsched.scheduling.cache import KnownSlots, TtlCache
from radsched.scheduling.client import RisClient
from radsched.scheduling.control_ids import ControlIds
from radsched.scheduling.errors import (
    SchedulingError,
    SlotUnavailable,
    UnknownLocation,
    UnknownOrder,
)
from radsched.storage import bookings
from radsched.storage.bookings import BookingRow
from radsched.storage.db import Database
from radsched.storage.orders import OrderStore, StoredOrder
from radsched.storage.pg import Connection
from radsched.tasks import spawn

log = logging.getLogger("radsched.ris")

#: How far ahead a booking looks for a slot it has not seen offered (another daemon listed it).
SLOT_LOOKUP_DAYS = 62
SLOT_LOOKUP_LIMIT = 2000
#: Background resolution of pending bookings.
RESOLVE_INTERVAL_S = 30.0
#: A pending booking unresolved for this long is given up (marked failed, staff follow up).
GIVE_UP_AFTER = timedelta(hours=24)


@dataclass(frozen=True)
class BookingInput:
    order_id: str
    mrn: str
    slot_id: str
    location_id: str
    modality: str
    source: Literal["rest", "sms"]
    correlation_id: str = ""


@dataclass(frozen=True)
class BookedAppointment:
    booking_id: uuid.UUID
    order: channels.OrderRef
    facility: str | None
    appointment: channels.Appointment
    """Slot, location, confirmation code, filler id."""
    replayed: bool
    """True when an idempotent repeat returned the stored outcome."""


BookingHook = Callable[[Connection, BookedAppointment], Awaitable[None]]
Clock = Callable[[], datetime]


class SchedulingService:
    def __init__(
        self,
        *,
        db: Database,
        orders: OrderStore,
        ris: RisClient,
        dialect: Dialect,
        control_ids: ControlIds,
        tz: tzinfo,
        clock: Clock,
        location_cache_s: float,
        slot_cache_s: float = 0.0,
        known_slots: KnownSlots | None = None,
    ) -> None:
        self.ris = ris
        self.dialect = dialect
        self.tz = tz
        self._db = db
        self._orders = orders
        self._ids = control_ids
        self._clock = clock
        self._locations: TtlCache[str, list[Location]] = TtlCache(location_cache_s)
        # Off by default (0): identical concurrent queries still share one round trip, but nothing is
        # kept, because a slot shown from a cache may be gone by booking time (a 409).
        self._slot_lists: TtlCache[tuple[object, ...], list[Slot]] = TtlCache(slot_cache_s)
        self._known = known_slots or KnownSlots()
        self._hooks: list[BookingHook] = []
        self._inflight: dict[uuid.UUID, asyncio.Task[BookedAppointment]] = {}

    @property
    def reachable(self) -> bool:
        """False shortly after the RIS was unreachable or silent (see :attr:`RisClient.reachable`)."""
        return self.ris.reachable

    # ---- locations ------------------------------------------------------------------------------

    async def locations(self, modality: str) -> list[Location]:
        """Locations offering ``modality`` (cached for ``LOCATION_CACHE_S``)."""
        code = modality.strip().upper()
        return list(await self._locations.get(code, lambda: self._query_locations(code)))

    async def _query_locations(self, modality: str) -> list[Location]:
        out = self.dialect.build_location_query(modality)
        found = await self.ris.exchange(out, self.dialect.parse_location_response)
        # A RIS that ignores the filter and lists everything still gives the right answer.
        return [loc for loc in found if not loc.modalities or modality in loc.modalities]

    async def _location(self, location_id: str, modality: str) -> Location:
        for loc in await self.locations(modality):
            if loc.id == location_id:
                return loc
        raise UnknownLocation(f"no location {location_id!r} offers {modality.upper()}")

    # ---- slots ----------------------------------------------------------------------------------

    async def slots(
        self,
        location_id: str,
        modality: str,
        *,
        start: datetime,
        end: datetime,
        limit: int | None = None,
    ) -> list[Slot]:
        """Open slots at ``location_id`` for ``modality`` starting in [start, end)."""
        code = modality.strip().upper()
        await self._location(location_id, code)
        key = (location_id, code, start, end, limit)
        found = await self._slot_lists.get(
            key, lambda: self._query_slots(location_id, code, start, end, limit)
        )
        return list(found)

    async def _query_slots(
        self, location_id: str, modality: str, start: datetime, end: datetime, limit: int | None
    ) -> list[Slot]:
        out = self.dialect.build_slot_query(location_id, modality, start, end, limit=limit)
        found = await self.ris.exchange(out, self.dialect.parse_slot_response)
        # Some RISes leave the location or modality out of each row: they are the ones asked for.
        slots = [
            s
            if s.location_id and s.modality
            else replace(
                s, location_id=s.location_id or location_id, modality=s.modality or modality
            )
            for s in found
        ]
        self._known.remember(slots)
        return slots

    async def _find_slot(self, request: BookingInput) -> Slot:
        modality = request.modality.strip().upper()
        slot = self._known.get(request.slot_id)
        if slot is None:
            # Listed by another daemon, or long ago: ask the RIS for what it offers now.
            now = self._clock()
            await self.slots(
                request.location_id,
                modality,
                start=now,
                end=now + timedelta(days=SLOT_LOOKUP_DAYS),
                limit=SLOT_LOOKUP_LIMIT,
            )
            slot = self._known.get(request.slot_id)
        if slot is None or slot.location_id != request.location_id or slot.modality != modality:
            raise SlotUnavailable(
                f"slot {request.slot_id!r} is not offered at {request.location_id!r} for {modality}"
            )
        return slot

    async def find_slot(self, slot_id: str, location_id: str, modality: str) -> Slot:
        """The open slot ``slot_id`` (from listings, else asked of the RIS); SlotUnavailable if not offered."""
        return await self._find_slot(
            BookingInput("", "", slot_id, location_id, modality, source="rest")
        )

    def slot_changed(self, slot_id: str, location_id: str) -> None:
        """A slot was taken or freed by a change: no cached list may offer (or hide) it any more."""
        self._known.forget(slot_id)
        self._slot_lists.invalidate_where(lambda key: key[0] == location_id)

    @property
    def control_ids(self) -> ControlIds:
        return self._ids

    # ---- booking --------------------------------------------------------------------------------

    def add_booking_hook(self, hook: BookingHook) -> None:
        """Run ``hook`` inside the transaction that marks a booking 'booked' (first time only)."""
        self._hooks.append(hook)

    async def book(self, request: BookingInput) -> BookedAppointment:
        with correlated(request.correlation_id or secrets.token_hex(8)):
            return await self._book(request)

    async def _book(self, request: BookingInput) -> BookedAppointment:
        key = self._orders.key(request.order_id)
        async with self._db.transaction("ris.booking_lookup") as conn:
            stored = await self._orders.get_by_key(conn, key)
            row = await bookings.get(conn, key, request.slot_id)
        # Unknown, another patient's, or over: one answer, so an order id alone tells nothing.
        if stored is None or not self._orders.mrn_matches(stored, request.mrn):
            raise UnknownOrder()
        if row is None:
            if stored.order is None or stored.state == "cancelled":
                raise UnknownOrder()
            if stored.state == "booked":
                # One appointment per order: a second slot would leave two RIS appointments for one exam.
                raise SlotUnavailable("the order is already booked into another slot")
            await self._location(request.location_id, request.modality)
            slot = await self._find_slot(request)
            row = await self._insert(key, request, slot)
            log.info(
                "booking",
                extra={"booking_id": str(row.id), "control_id": row.control_id, "slot": slot.id},
            )
        return await self._settle(row, stored, request.mrn)

    async def _insert(self, key: str, request: BookingInput, slot: Slot) -> BookingRow:
        async with self._db.transaction("ris.booking_insert") as conn:
            row = await bookings.insert_pending(
                conn,
                order_key=key,
                slot=slot,
                control_id=self._ids.fresh(),
                appointment_id=_appointment_id(),
                source=request.source,
                correlation_id=request.correlation_id or "-",
                now=self._clock(),
            )
            if row is None:  # a concurrent request for the same order and slot won the insert
                row = await bookings.get(conn, key, slot.id)
        assert row is not None
        return row

    async def _settle(self, row: BookingRow, stored: StoredOrder, mrn: str) -> BookedAppointment:
        """The outcome of ``row``: stored when final, otherwise from the RIS (once per booking)."""
        if row.state == "booked":
            return self._appointment(row, stored, mrn, replayed=True)
        if row.state == "rejected":
            raise SlotUnavailable(_rejection(row.ack_code, row.reason))
        if row.state == "failed":
            async with self._db.transaction("ris.booking_retry") as conn:
                renewed = await bookings.retry_with(conn, row.id, self._ids.fresh(), self._clock())
                if renewed is None:  # someone else retried or resolved it meanwhile
                    renewed = await bookings.get_by_id(conn, row.id)
            assert renewed is not None
            if renewed.state != "pending":
                return await self._settle(renewed, stored, mrn)
            row = renewed
        task = self._inflight.get(row.id)
        replayed = task is not None
        if task is None:
            task = spawn(self._send_booking(row, stored, mrn), name="ris-booking", awaited=True)
            self._inflight[row.id] = task
            task.add_done_callback(lambda done: self._finished(row.id, done))
        # Shielded: a caller that goes away (HTTP client disconnect) must not cut the exchange short,
        # which would leave the booking pending although the RIS answered.
        result = await asyncio.shield(task)
        return replace(result, replayed=True) if replayed else result

    def _finished(self, booking_id: uuid.UUID, task: asyncio.Task[BookedAppointment]) -> None:
        if self._inflight.get(booking_id) is task:
            del self._inflight[booking_id]
        if not task.cancelled():
            task.exception()  # retrieved: the awaiting callers report it

    async def _send_booking(
        self, row: BookingRow, stored: StoredOrder, mrn: str
    ) -> BookedAppointment:
        order = stored.order
        if order is None:
            raise UnknownOrder()
        slot = row.slot()
        out = self._ids.build_with(
            row.control_id, lambda: self.dialect.build_booking(order, slot, row.appointment_id)
        )
        result: BookingResult = await self.ris.exchange(
            out, self.dialect.parse_booking_response, lambda r: r.ack_code.value
        )
        if result.accepted:
            return await self._confirm(row, stored, mrn, result)
        # AE: the RIS will not take it (slot gone) — final. AR: the RIS could not process it; a later
        # request for the same order and slot may try again under a new control id.
        final = result.ack_code.value == "AE"
        async with self._db.transaction("ris.booking_rejected") as conn:
            await bookings.mark_unsuccessful(
                conn,
                row.id,
                state="rejected" if final else "failed",
                ack_code=result.ack_code.value,
                reason=result.reason,
                now=self._clock(),
            )
        self._slot_changed(row)
        log.info(
            "booking rejected by the RIS",
            extra={"booking_id": str(row.id), "control_id": row.control_id, "ack": result.ack_code},
        )
        raise SlotUnavailable(_rejection(result.ack_code.value, result.reason))

    async def _confirm(
        self, row: BookingRow, stored: StoredOrder, mrn: str, result: BookingResult
    ) -> BookedAppointment:
        async with self._db.transaction("ris.booking_confirm") as conn:
            current = await bookings.get_by_id(conn, row.id, for_update=True)
            assert current is not None
            if current.state == "booked":  # resolved by another daemon meanwhile
                return self._appointment(current, stored, mrn, replayed=True)
            booked_row = await bookings.mark_booked(
                conn,
                row.id,
                ack_code=result.ack_code.value,
                filler_appointment_id=result.appointment_id,
                now=self._clock(),
            )
            booked = self._appointment(booked_row, stored, mrn, replayed=False)
            await self._orders.set_state(conn, row.order_key, "booked", now=self._clock())
            for hook in self._hooks:
                await hook(conn, booked)
        self._slot_changed(row)
        log.info(
            "booked",
            extra={"booking_id": str(row.id), "control_id": row.control_id},
        )
        return booked

    def _slot_changed(self, row: BookingRow) -> None:
        """The slot is taken: neither the known slots nor a cached list may offer it again."""
        self._known.forget(row.slot_id)
        self._slot_lists.invalidate_where(lambda key: key[0] == row.location_id)

    def _appointment(
        self, row: BookingRow, stored: StoredOrder, mrn: str, *, replayed: bool
    ) -> BookedAppointment:
        order = stored.order or channels.OrderRef(order_id="", mrn=mrn)
        location = next(
            (loc for loc in self._locations.peek(row.modality) or [] if loc.id == row.location_id),
            Location(row.location_id, "", "", (row.modality,)),
        )
        appointment = channels.Appointment(
            id=row.appointment_id,
            order_id=order.order_id,
            slot=row.slot(),
            location=location,
            procedure_code=order.procedure_code,
            procedure_text=order.procedure_text,
            procedure_system=order.procedure_system,
            filler_appointment_id=row.filler_appointment_id or "",
            confirmation_code=row.confirmation_code or "",
        )
        return BookedAppointment(row.id, order, stored.facility, appointment, replayed)

    # ---- pending bookings -------------------------------------------------------------------------

    async def resolve_pending(self, *, untouched_for: timedelta = timedelta(0)) -> int:
        """Re-send pending bookings not touched for ``untouched_for``; returns how many were resolved."""
        now = self._clock()
        async with self._db.transaction("ris.bookings_pending") as conn:
            rows = await bookings.pending(conn, untouched_since=now - untouched_for)
        resolved = 0
        for row in rows:
            with correlated(row.correlation_id):
                resolved += await self._resolve_one(row, now)
        return resolved

    async def _resolve_one(self, row: BookingRow, now: datetime) -> int:
        async with self._db.transaction("ris.booking_lookup") as conn:
            stored = await self._orders.get_by_key(conn, row.order_key)
        if stored is None or stored.order is None or now - row.created_at > GIVE_UP_AFTER:
            async with self._db.transaction("ris.booking_give_up") as conn:
                await bookings.mark_unsuccessful(
                    conn,
                    row.id,
                    state="failed",
                    ack_code=None,
                    reason="unresolved: the RIS never answered this booking",
                    now=now,
                )
            log.warning("pending booking given up", extra={"booking_id": str(row.id)})
            return 0
        try:
            await self._settle(row, stored, stored.order.mrn)
        except SlotUnavailable:
            return 1  # resolved: rejected
        except SchedulingError as exc:
            log.warning(
                "pending booking still unresolved",
                extra={"booking_id": str(row.id), "control_id": row.control_id, "why": exc.code},
            )
            return 0
        return 1

    async def run_resolver(self, started_at: datetime) -> None:
        """Resolve what a previous run left pending, then keep resolving stragglers until cancelled."""
        first = True
        while True:
            try:
                if first:
                    # Everything not touched since before we started was left by an earlier run.
                    await self.resolve_pending(untouched_for=self._clock() - started_at)
                else:
                    await self.resolve_pending(
                        untouched_for=timedelta(seconds=self.ris.timeout + RESOLVE_INTERVAL_S)
                    )
            except Exception:  # a background loop: log, keep going, never die silently
                log.exception("resolving pending bookings failed")
            first = False
            await asyncio.sleep(RESOLVE_INTERVAL_S)

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()


def _appointment_id() -> str:
    """Our placer appointment id (ARQ-1 / SCH-1 / OBR-18): 16 characters fit every version's field."""
    return "RS" + uuid.uuid4().hex[:14].upper()


def _rejection(ack_code: str | None, reason: str | None) -> str:
    text = f"the RIS rejected the booking ({ack_code or 'no code'})"
    return f"{text}: {reason}" if reason else text
