"""The conversation's RIS commands, made through the scheduling service and turned into events.

``FetchLocations`` → ``LocationsLoaded``, ``FetchSlots`` → ``SlotsLoaded``, ``Book`` →
``BookingConfirmed`` / ``BookingRejected``, and a change conversation's ``Reschedule`` (through the
appointment lifecycle: SRM^S02 or ORM XO to the RIS, SIU^S13 to the EMRs) → ``BookingConfirmed``
with the new code / ``BookingRejected``; every failure to get an answer (RIS unreachable, too
slow, an error or unparseable reply to a query) → ``RisDown``, which the core turns into the
call-us text with the order kept for staff. A refusal of the booking itself (AE/AR, HTTP 409) is
``BookingRejected(slot_taken)``: the patient is offered fresh times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from radsched.conversation.model import (
    Book,
    BookingConfirmed,
    BookingRejected,
    Event,
    FetchLocations,
    FetchSlots,
    LocationsLoaded,
    MenuLocation,
    MenuSlot,
    RejectReason,
    Reschedule,
    RisDown,
    SlotsLoaded,
)
from radsched.sms.driver import PendingCall

if TYPE_CHECKING:
    from radsched.scheduling.service import SchedulingService

log = logging.getLogger("radsched.sms.ris")

__all__ = ["SLOT_SEARCH_DAYS", "Rescheduler", "RisCaller"]

SLOT_SEARCH_DAYS = 21  # how far ahead a slot menu looks; later than that, staff are better placed
# Slots start on whole minutes; asking from one second after the last offered start gives
# "strictly after" without relying on the RIS's boundary semantics.
_AFTER = timedelta(seconds=1)


class RescheduledView(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def confirmation_code(self) -> str: ...


class RescheduleOutcome(Protocol):
    @property
    def appointment(self) -> RescheduledView: ...


class Rescheduler(Protocol):
    """The appointment lifecycle's reschedule (radsched.scheduling.lifecycle.Lifecycle)."""

    async def reschedule(
        self, appointment_id: str, slot_id: str, *, origin: Literal["sms"], location_id: str
    ) -> RescheduleOutcome: ...


class RisCaller:
    """Performs one RIS command for a conversation and returns the event that answers it.

    ``rescheduler`` is late-bound: the lifecycle is built after the SMS engine (radsched/daemon.py).
    """

    def __init__(
        self,
        scheduling: Callable[[], SchedulingService | None],
        *,
        clock: Callable[[], datetime],
        search_days: int = SLOT_SEARCH_DAYS,
        rescheduler: Callable[[], Rescheduler | None] = lambda: None,
    ) -> None:
        self._scheduling = scheduling
        self._rescheduler = rescheduler
        self._clock = clock
        self._window = timedelta(days=search_days)

    def reachable(self) -> bool:
        """The current view of the RIS for ``OrderReceived.ris_reachable``."""
        service = self._scheduling()
        # False for a short while after the RIS was unreachable or silent (the service's view).
        return service is not None and service.reachable

    async def answer(self, call: PendingCall) -> Event:
        service = self._scheduling()
        if service is None:
            return RisDown()
        from radsched.scheduling import errors, lifecycle

        command = call.command
        try:
            match command:
                case FetchLocations(modality=modality):
                    return await self._locations(service, modality)
                case FetchSlots():
                    return await self._slots(service, command)
                case Book():
                    return await self._book(service, command, call)
                case Reschedule():
                    return await self._reschedule(command, call)
        except (errors.SlotUnavailable, lifecycle.ChangeRefused):
            # Taken, or the RIS refused the move (the appointment stands): fresh times.
            return BookingRejected(RejectReason.SLOT_TAKEN)
        except (lifecycle.ChangeConflict, lifecycle.UnknownAppointment):
            # Another change is waiting for the RIS, or the appointment ended: a person calls.
            return BookingRejected(RejectReason.REJECTED)
        except (errors.UnknownOrder, errors.UnknownLocation) as exc:
            if isinstance(command, Book):
                return BookingRejected(RejectReason.REJECTED)
            log.warning("RIS does not know the location", extra={"code": exc.code})
            return (
                LocationsLoaded(())
                if isinstance(command, FetchLocations)
                else SlotsLoaded((), more_available=False)
            )
        except errors.RisFailed:
            # For a booking this is an unreadable answer, never a refusal (AE/AR is SlotUnavailable):
            # the booking stays pending and the RIS resolver re-sends it, so the outcome is unknown.
            return RisDown()
        except errors.SchedulingError as exc:
            log.warning("RIS call failed", extra={"code": exc.code, "call": type(command).__name__})
            return RisDown()
        except Exception:
            # A bug must not leave the patient waiting for the busy timeout: hand over now.
            log.exception("RIS call raised unexpectedly", extra={"call": type(command).__name__})
            return RisDown()
        raise AssertionError(f"not a RIS command: {type(command).__name__}")

    @staticmethod
    async def _locations(service: SchedulingService, modality: str) -> LocationsLoaded:
        found = await service.locations(modality)
        return LocationsLoaded(
            tuple(
                MenuLocation(loc.id, loc.name)
                for loc in found
                if not loc.modalities or modality in loc.modalities
            )
        )

    async def _slots(self, service: SchedulingService, command: FetchSlots) -> SlotsLoaded:
        now = self._clock()
        start = max(now, command.after + _AFTER) if command.after else now
        found = await service.slots(
            command.location_id,
            command.modality,
            start=start,
            end=start + self._window,
            limit=command.count + 1,
        )
        later = sorted(
            (s for s in found if command.after is None or s.start > command.after),
            key=lambda s: s.start,
        )
        page = later[: command.count]
        return SlotsLoaded(
            tuple(MenuSlot(s.id, s.location_id, s.start, s.duration_minutes) for s in page),
            more_available=len(later) > len(page),
        )

    async def _reschedule(self, command: Reschedule, call: PendingCall) -> Event:
        rescheduler = self._rescheduler()
        if rescheduler is None or not call.appointment_id:
            return RisDown()
        # Crash-safe and idempotent on (appointment, slot): a repeat returns the stored outcome.
        outcome = await rescheduler.reschedule(
            call.appointment_id, command.slot_id, origin="sms", location_id=command.location_id
        )
        moved = outcome.appointment
        return BookingConfirmed(
            confirmation_code=moved.confirmation_code, appointment_id=moved.id, start=moved.start
        )

    @staticmethod
    async def _book(
        service: SchedulingService, command: Book, call: PendingCall
    ) -> BookingConfirmed:
        from radsched.scheduling.service import BookingInput

        booked = await service.book(
            BookingInput(
                order_id=call.order_id,
                mrn=call.mrn,
                slot_id=command.slot_id,
                location_id=command.location_id,
                modality=command.modality,
                source="sms",
                correlation_id=call.correlation_id,
            )
        )
        appointment = booked.appointment
        return BookingConfirmed(
            confirmation_code=appointment.confirmation_code,
            appointment_id=str(booked.booking_id),
            start=appointment.slot.start,
            location_name=appointment.location.name or None,
        )
