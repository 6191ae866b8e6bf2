"""Transitions for the menus: locations, slots, booking, and the RIS's answers to them."""

from __future__ import annotations

from datetime import datetime

from radsched.conversation.model import (
    Audit,
    Book,
    BookingRejected,
    ConversationKind,
    DeferReason,
    EndReason,
    FetchSlots,
    LocationsLoaded,
    MenuLocation,
    RejectReason,
    Reschedule,
    RisDown,
    SlotsLoaded,
    State,
)
from radsched.conversation.ris_wait import RisWaitSteps
from radsched.conversation.templates import TemplateId, format_local_time

__all__ = ["MenuSteps"]


class MenuSteps(RisWaitSteps):
    """Choosing a location, then a slot, then booking it."""

    # --- locations -------------------------------------------------------------------------

    def available_locations(self) -> list[str]:
        excluded = set(self.conv.excluded_locations)
        return [loc.id for loc in self.conv.locations if loc.id not in excluded]

    def location_menu(self, template_id: TemplateId, location_name: str = "") -> None:
        ids = self.available_locations()[self.conv.location_offset :]
        names = {loc.id: loc.name for loc in self.conv.locations}
        labels = [names[i] for i in ids]
        if location_name:
            menu, shown = self.text(
                template_id, labels, time_sensitive=True, location_name=location_name
            )
        else:
            menu, shown = self.text(template_id, labels, time_sensitive=True)
        self.update(
            state=State.CHOOSING_LOCATION,
            location_menu=tuple(ids[:shown]),
            last_menu=menu,
            busy_until=None,
        )

    def choose_location(self, n: int) -> None:
        if not 1 <= n <= len(self.conv.location_menu):
            self.unrecognised()
            return
        wanted = self.conv.location_menu[n - 1]
        location = next(loc for loc in self.conv.locations if loc.id == wanted)
        self.update(location=location, slots=(), more_slots=False, slot_taken=False)
        self.fetch_slots(after=None)

    def more_locations(self) -> None:
        offset = self.conv.location_offset + len(self.conv.location_menu)
        if offset >= len(self.available_locations()):
            self.unrecognised()
            return
        self.update(location_offset=offset, unrecognised=0)
        self.location_menu(TemplateId.LOCATION_MENU)

    # --- slots and booking -----------------------------------------------------------------

    def fetch_slots(self, after: datetime | None) -> None:
        assert self.conv.location is not None
        self.emit(
            FetchSlots(self.conv.location.id, self.conv.modality, after, self.cfg.slot_page_size)
        )
        self.busy(State.LOADING_SLOTS)

    def slot_label(self, start: datetime) -> str:
        return format_local_time(start.astimezone(self.cfg.timezone), self.conv.language)

    def choose_slot(self, n: int) -> None:
        if not 1 <= n <= len(self.conv.slots):
            self.unrecognised()
            return
        slot = self.conv.slots[n - 1]
        self.update(chosen_slot=slot, booking_attempts=self.conv.booking_attempts + 1)
        if self.conv.kind is ConversationKind.RESCHEDULE:
            self.emit(Reschedule(slot.id, slot.location_id, self.conv.modality))
            self.busy(State.RESCHEDULING)
        else:
            self.emit(Book(slot.id, slot.location_id, self.conv.modality))
            self.busy(State.BOOKING)

    def more_slots(self) -> None:
        if not self.conv.more_slots or not self.conv.slots:
            self.no_more_slots()
            return
        self.fetch_slots(after=self.conv.slots[-1].start)

    def no_more_slots(self) -> None:
        assert self.conv.location is not None
        # Counted as a miss: a patient (or a bot) sending MORE forever must reach the limit.
        count = self.conv.unrecognised + 1
        if count > self.cfg.max_menu_repeats:
            self.update(unrecognised=count)
            self.call_us(DeferReason.UNRECOGNISED_REPLIES)
            return
        self.text(TemplateId.NO_MORE_SLOTS, location_name=self.conv.location.name)
        self.update(state=State.CHOOSING_SLOT, unrecognised=count, more_slots=False)

    # --- answers from the RIS --------------------------------------------------------------

    def on_ris_answer(
        self, event: LocationsLoaded | SlotsLoaded | BookingRejected | RisDown
    ) -> None:
        state = self.conv.state
        expected = {
            State.LOADING_LOCATIONS: (LocationsLoaded, RisDown),
            State.LOADING_SLOTS: (SlotsLoaded, RisDown),
            State.BOOKING: (BookingRejected, RisDown),
            State.RESCHEDULING: (BookingRejected, RisDown),
        }.get(state, ())
        if not isinstance(event, expected):
            self.emit(Audit("late_ris_answer", type(event).__name__))
            return
        if not isinstance(event, RisDown):
            self.clear_ris_wait()
        match event:
            case RisDown():
                self.ris_down()  # wait for the RIS, or hand over (radsched.conversation.ris_wait)
            case LocationsLoaded(locations=locations):
                self.on_locations(locations)
            case SlotsLoaded():
                self.on_slots(event)
            case BookingRejected(reason=reason):
                self.on_rejected(reason)

    def on_locations(self, locations: tuple[MenuLocation, ...]) -> None:
        unique = tuple({loc.id: loc for loc in locations}.values())
        if not unique:
            self.no_availability()
            return
        self.update(locations=unique, excluded_locations=(), location_offset=0)
        here = next((loc for loc in unique if loc.id == self.conv.change_location_id), None)
        if self.conv.kind is ConversationKind.RESCHEDULE and here is not None:
            # A move offers the appointment's own location first; L shows the others.
            self.update(location=here, slots=(), more_slots=False)
            self.fetch_slots(after=None)
            return
        self.location_menu(TemplateId.LOCATION_MENU)

    def other_locations(self) -> None:
        """L in a change conversation's slot menu: the location menu, from the first page."""
        if not self.available_locations():
            self.unrecognised()
            return
        self.update(location_offset=0, unrecognised=0)
        self.location_menu(TemplateId.LOCATION_MENU)

    def no_availability(self) -> None:
        self.text(TemplateId.NO_AVAILABILITY)
        self.end(EndReason.DEFERRED, DeferReason.NO_AVAILABILITY)

    def on_slots(self, event: SlotsLoaded) -> None:
        location = self.conv.location
        assert location is not None
        paging = bool(self.conv.slots)
        # Never offer a time that has already started, whatever the RIS sent.
        fresh = sorted((s for s in event.slots if s.start > self.now), key=lambda s: s.start)
        page = fresh[: self.cfg.slot_page_size]
        if not page and paging:
            self.update(state=State.CHOOSING_SLOT, busy_until=None)
            self.no_more_slots()
        elif not page:
            self.update(excluded_locations=(*self.conv.excluded_locations, location.id))
            if not self.available_locations():
                self.no_availability()
                return
            self.update(location_offset=0)
            self.location_menu(TemplateId.NO_SLOTS_AT_LOCATION, location_name=location.name)
        else:
            template = TemplateId.SLOT_MENU
            if self.conv.slot_taken:
                template = TemplateId.SLOT_TAKEN
            elif self.conv.kind is ConversationKind.RESCHEDULE:
                template = TemplateId.CHANGE_MENU
            more = event.more_available or len(fresh) > len(page)
            menu, shown = self.text(
                template,
                [self.slot_label(slot.start) for slot in page],
                more=more,
                time_sensitive=True,
                location_name=location.name,
            )
            self.update(
                state=State.CHOOSING_SLOT,
                slots=tuple(page[:shown]),
                more_slots=more or shown < len(page),
                slot_taken=False,
                last_menu=menu,
                busy_until=None,
            )

    def on_rejected(self, reason: RejectReason) -> None:
        taken = reason is RejectReason.SLOT_TAKEN
        if not taken or self.conv.booking_attempts >= self.cfg.max_booking_attempts:
            self.call_us(DeferReason.BOOKING_REJECTED)
        else:
            self.update(slots=(), more_slots=False, slot_taken=True, chosen_slot=None)
            self.fetch_slots(after=None)
