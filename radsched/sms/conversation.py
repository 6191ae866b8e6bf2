"""The conversation as a pure transition: ``step(state, event, now, cfg) -> (state, commands)``.

No I/O, no clock, no randomness: the same inputs always give the same outputs, which is what
lets a conversation survive restarts (the driver stores the state) and read as a playbook in
the tests. The flow is DESIGN.md section 7; docs/sms.md has the full state table.

Rules that hold in every state:

- STOP (and every revocation word, see :mod:`radsched.sms.keywords`) revokes consent at once.
  A live conversation ends and its order goes to staff; one confirmation text is sent unless
  the conversation was already opted out.
- HELP is answered with the practice name and phone and changes nothing else.
- Quiet hours delay only the *first* text of a conversation; replies are never delayed.
- A conversation expires ``idle_expiry`` after the patient's last activity (or after the first
  contact when they never replied), and never lives longer than ``max_lifetime`` after the
  order. Expiry sends no text (it could fall at night); the order goes to staff.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from radsched.sms.config import ConversationConfig
from radsched.sms.keywords import Choice, Help, Intent, More, No, Start, Stop, Yes, classify
from radsched.sms.model import (
    BUSY_STATES,
    TERMINAL_STATES,
    Audit,
    Book,
    BookingConfirmed,
    BookingRejected,
    Command,
    ConsentStatus,
    Conversation,
    DeferReason,
    DeferToStaff,
    EndConversation,
    EndReason,
    Event,
    FetchLocations,
    FetchSlots,
    InboundText,
    Location,
    LocationsLoaded,
    OrderCancelled,
    OrderReceived,
    RecordConsent,
    RejectReason,
    RisUnavailable,
    ScheduleWake,
    SendText,
    SlotsLoaded,
    State,
    Tick,
)
from radsched.sms.templates import TemplateId, format_local_time

__all__ = ["step"]

_RECENT_SIDS = 8  # Twilio retries a webhook with the same MessageSid; the driver dedupes too
_END_STATE = {
    EndReason.BOOKED: State.BOOKED,
    EndReason.OPTED_OUT: State.OPTED_OUT,
    EndReason.DEFERRED: State.DEFERRED_TO_PHONE,
    EndReason.CANCELLED: State.CANCELLED,
    EndReason.EXPIRED: State.EXPIRED,
}


def step(
    conv: Conversation, event: Event, now: datetime, cfg: ConversationConfig
) -> tuple[Conversation, list[Command]]:
    """Apply one event. ``now`` must be aware (UTC is best). Never raises for a valid event."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("step() needs an aware datetime")
    run = _Step(conv, now, cfg)
    run.apply(event)
    return run.finish()


class _Step:
    """One transition in progress: the new state so far and the commands emitted."""

    def __init__(self, conv: Conversation, now: datetime, cfg: ConversationConfig) -> None:
        self.before = conv
        self.conv = conv
        self.now = now
        self.cfg = cfg
        self.commands: list[Command] = []

    # --- plumbing --------------------------------------------------------------------------

    def update(self, **changes: Any) -> None:
        self.conv = dataclasses.replace(self.conv, **changes)

    def emit(self, *commands: Command) -> None:
        self.commands.extend(commands)

    def text(
        self,
        template_id: TemplateId,
        menu: Sequence[str] = (),
        *,
        more: bool = False,
        time_sensitive: bool = False,
        **params: str,
    ) -> tuple[SendText, int]:
        """Render and emit a text; return it and how many menu items it shows."""
        values = {
            "practice_name": self.cfg.practice_name,
            "scheduling_phone": self.cfg.scheduling_phone,
            **params,
        }
        rendered = self.cfg.templates.render(
            self.conv.language, template_id, values, menu, more=more
        )
        command = SendText(
            template_id,
            rendered.text,
            self.cfg.templates.language(self.conv.language),
            time_sensitive,
            values,
        )
        self.emit(command)
        return command, rendered.items_shown

    def end(self, reason: EndReason, defer: DeferReason | None = None) -> None:
        if defer is not None:
            self.emit(DeferToStaff(defer), Audit("deferred", defer))
        self.emit(Audit("ended", reason), EndConversation(reason))
        self.update(state=_END_STATE[reason], end_reason=reason, busy_until=None)

    def call_us(self, defer: DeferReason) -> None:
        self.text(TemplateId.CALL_US)
        self.end(EndReason.DEFERRED, defer)

    def touch(self) -> None:
        """Patient activity (or our first contact): push expiry out."""
        self.update(last_activity_at=self.now)

    def finish(self) -> tuple[Conversation, list[Command]]:
        # EndConversation deletes the sealed PHI, so whatever else this event caused (a
        # reply to a text that arrived after a missed expiry) must be performed first.
        ends = [c for c in self.commands if isinstance(c, EndConversation)]
        self.commands = [c for c in self.commands if not isinstance(c, EndConversation)] + ends
        conv = self.conv
        if conv.state is State.NEW:
            return conv, self.commands  # no order yet, so no clock is running
        if conv.state in TERMINAL_STATES:
            conv = dataclasses.replace(conv, wake_at=None, expires_at=None)
        else:
            last = conv.last_activity_at or conv.created_at
            expires = min(last + self.cfg.idle_expiry, conv.created_at + self.cfg.max_lifetime)
            deadlines = [expires]
            if conv.state is State.PENDING_FIRST_CONTACT and conv.first_contact_at:
                deadlines.append(conv.first_contact_at)
            if conv.busy_until is not None:
                deadlines.append(conv.busy_until)
            conv = dataclasses.replace(conv, expires_at=expires, wake_at=min(deadlines))
            if conv.wake_at != self.before.wake_at:
                self.commands.append(ScheduleWake(min(deadlines)))
        return conv, self.commands

    # --- dispatch --------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        expires = self.conv.expires_at
        if not self.conv.is_over and expires is not None and self.now >= expires:
            # The Tick may be late (daemon down): expire first, then treat the event as
            # arriving after the end, which it did.
            self.expire()
            if isinstance(event, Tick):
                return
        match event:
            case OrderReceived():
                self.on_order(event)
            case InboundText():
                self.on_inbound(event)
            case Tick():
                self.on_tick()
            case OrderCancelled():
                self.on_cancelled()
            case BookingConfirmed():
                self.on_booked(event)
            case LocationsLoaded() | SlotsLoaded() | BookingRejected() | RisUnavailable():
                self.on_ris_answer(event)

    # --- order and first contact -----------------------------------------------------------

    def on_order(self, event: OrderReceived) -> None:
        if self.conv.state is not State.NEW:
            self.emit(Audit("order_ignored", self.conv.state))
            return
        self.update(
            modality=event.modality,
            language=self.cfg.templates.language(event.language),
            last_activity_at=self.now,
        )
        if event.consent == ConsentStatus.REVOKED:
            # No text at all, not even "call us": they told us to stop.
            self.end(EndReason.OPTED_OUT, DeferReason.OPTED_OUT)
            return
        if not event.textable:
            self.end(EndReason.DEFERRED, DeferReason.NOT_TEXTABLE)
            return
        first = TemplateId.CONSENT_REQUEST
        if not event.modality_enabled or not event.ris_reachable:
            # The order goes to staff now; only the "please call us" text may have to wait.
            first = TemplateId.CALL_US
            reason = DeferReason.RIS_UNAVAILABLE
            if not event.modality_enabled:
                reason = DeferReason.MODALITY_DISABLED
            self.emit(DeferToStaff(reason), Audit("deferred", reason))
        self.update(first_template=first)
        quiet = self.cfg.quiet_hours
        if quiet is not None and quiet.contains(self.now, self.cfg.timezone):
            at = quiet.next_allowed(self.now, self.cfg.timezone)
            self.update(state=State.PENDING_FIRST_CONTACT, first_contact_at=at)
            self.emit(Audit("first_contact_delayed", str(quiet)))
            return
        self.first_contact()

    def first_contact(self) -> None:
        self.update(first_contact_at=self.now)
        self.touch()
        self.emit(Audit("first_contact", self.conv.first_template or ""))
        if self.conv.first_template is TemplateId.CALL_US:
            self.text(TemplateId.CALL_US)
            self.end(EndReason.DEFERRED)
            return
        menu, _ = self.text(TemplateId.CONSENT_REQUEST)
        self.update(state=State.AWAITING_CONSENT, last_menu=menu, unrecognised=0)

    # --- time ------------------------------------------------------------------------------

    def on_tick(self) -> None:
        conv = self.conv
        if conv.state in TERMINAL_STATES or conv.state is State.NEW:
            return
        if (
            conv.state is State.PENDING_FIRST_CONTACT
            and conv.first_contact_at is not None
            and self.now >= conv.first_contact_at
        ):
            self.first_contact()
        elif conv.busy_until is not None and self.now >= conv.busy_until:
            self.emit(Audit("ris_timeout", conv.state))
            self.on_ris_answer(RisUnavailable())

    def expire(self) -> None:
        # No text: expiry can fall at night, and the patient did nothing wrong.
        self.emit(Audit("expired"))
        self.end(EndReason.EXPIRED, DeferReason.EXPIRED)

    # --- patient texts ---------------------------------------------------------------------

    def on_inbound(self, event: InboundText) -> None:
        conv = self.conv
        if event.message_sid and event.message_sid in conv.recent_message_sids:
            self.emit(Audit("duplicate_inbound"))
            return
        if event.message_sid:
            sids = (*conv.recent_message_sids, event.message_sid)[-_RECENT_SIDS:]
            self.update(recent_message_sids=sids)
        intent = classify(event.body)
        self.emit(Audit("inbound", type(intent).__name__.lower()))
        if not self.conv.is_over and self.conv.state is not State.NEW:
            self.touch()
        match intent:
            case Stop(keyword=keyword):
                self.opt_out(keyword)
            case Help():
                self.text(TemplateId.HELP)
            case _ if self.conv.is_over:
                self.after_end(intent)
            case _ if self.conv.state is State.NEW:
                self.emit(Audit("inbound_before_order"))
            case _ if self.conv.state is State.PENDING_FIRST_CONTACT:
                # They wrote first, so answering now is a reply, not a night-time first contact.
                self.first_contact()
            case _ if self.conv.state in BUSY_STATES:
                self.emit(Audit("inbound_while_busy", self.conv.state))
            case Yes(keyword=kw) | Start(keyword=kw) if self.conv.state is State.AWAITING_CONSENT:
                self.emit(RecordConsent(True, kw), FetchLocations(self.conv.modality))
                self.busy(State.LOADING_LOCATIONS)
            case No() if self.conv.state is State.AWAITING_CONSENT:
                self.text(TemplateId.DECLINED)
                self.end(EndReason.DEFERRED, DeferReason.PATIENT_DECLINED)
            case Choice(n=n) if self.conv.state is State.CHOOSING_LOCATION:
                self.choose_location(n)
            case More() if self.conv.state is State.CHOOSING_LOCATION:
                self.more_locations()
            case Choice(n=n) if self.conv.state is State.CHOOSING_SLOT:
                self.choose_slot(n)
            case More() if self.conv.state is State.CHOOSING_SLOT:
                self.more_slots()
            case _:
                self.unrecognised()

    def opt_out(self, keyword: str) -> None:
        was = self.conv.state
        self.emit(RecordConsent(False, keyword))
        if was is not State.OPTED_OUT:
            self.text(TemplateId.OPTED_OUT)
        if was in TERMINAL_STATES:
            self.update(state=State.OPTED_OUT)
        else:
            # The order still needs an appointment: staff call instead (none yet in NEW).
            defer = DeferReason.OPTED_OUT if was is not State.NEW else None
            self.end(EndReason.OPTED_OUT, defer)

    def after_end(self, intent: Intent) -> None:
        conv = self.conv
        opted_out = conv.state is State.OPTED_OUT
        if isinstance(intent, Start) or (opted_out and isinstance(intent, Yes)):
            # Twilio lifts its own block on START/YES/UNSTOP; our consent record must follow.
            self.emit(RecordConsent(True, intent.keyword))
            if opted_out:
                self.text(TemplateId.RESUBSCRIBED)
                # The order went to staff at STOP: the conversation itself stays over.
                ended = conv.end_reason
                back = _END_STATE[ended] if ended and ended is not EndReason.OPTED_OUT else None
                self.update(state=back or State.DEFERRED_TO_PHONE)
                return
        if opted_out or conv.replies_after_end >= self.cfg.max_replies_after_end:
            self.emit(Audit("ignored_after_end", conv.state))
            return
        self.update(replies_after_end=conv.replies_after_end + 1)
        self.text(TemplateId.ENDED)

    def unrecognised(self) -> None:
        count = self.conv.unrecognised + 1
        self.update(unrecognised=count)
        if count > self.cfg.max_menu_repeats or self.conv.last_menu is None:
            self.call_us(DeferReason.UNRECOGNISED_REPLIES)
            return
        self.emit(self.conv.last_menu)

    def busy(self, state: State) -> None:
        self.update(state=state, busy_until=self.now + self.cfg.busy_timeout, unrecognised=0)

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
        self, event: LocationsLoaded | SlotsLoaded | BookingRejected | RisUnavailable
    ) -> None:
        state = self.conv.state
        expected = {
            State.LOADING_LOCATIONS: (LocationsLoaded, RisUnavailable),
            State.LOADING_SLOTS: (SlotsLoaded, RisUnavailable),
            State.BOOKING: (BookingRejected, RisUnavailable),
        }.get(state, ())
        if not isinstance(event, expected):
            self.emit(Audit("late_ris_answer", type(event).__name__))
            return
        match event:
            case RisUnavailable():
                booking = state is State.BOOKING
                self.call_us(
                    DeferReason.BOOKING_OUTCOME_UNKNOWN if booking else DeferReason.RIS_UNAVAILABLE
                )
            case LocationsLoaded(locations=locations):
                self.on_locations(locations)
            case SlotsLoaded():
                self.on_slots(event)
            case BookingRejected(reason=reason):
                self.on_rejected(reason)

    def on_locations(self, locations: tuple[Location, ...]) -> None:
        unique = tuple({loc.id: loc for loc in locations}.values())
        if not unique:
            self.no_availability()
            return
        self.update(locations=unique, excluded_locations=(), location_offset=0)
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
            template = TemplateId.SLOT_TAKEN if self.conv.slot_taken else TemplateId.SLOT_MENU
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

    def on_booked(self, event: BookingConfirmed) -> None:
        conv = self.conv
        if conv.state is not State.BOOKING:
            if conv.state in TERMINAL_STATES:
                # Booked after STOP, cancel or a timeout: no text; a person must call.
                self.emit(DeferToStaff(DeferReason.BOOKED_AFTER_END), Audit("booked_after_end"))
            else:
                self.emit(Audit("late_ris_answer", "BookingConfirmed"))
            return
        slot, location = conv.chosen_slot, conv.location
        assert slot is not None and location is not None
        start = event.start or slot.start
        self.text(
            TemplateId.CONFIRMATION,
            procedure_type=self.cfg.templates.procedure_type(conv.language, conv.modality),
            location_name=event.location_name or location.name,
            time=self.slot_label(start),
            code=event.confirmation_code,
        )
        self.emit(Audit("booked"))
        self.end(EndReason.BOOKED)

    def on_cancelled(self) -> None:
        if self.conv.is_over or self.conv.state is State.NEW:
            self.emit(Audit("order_cancelled_after_end", self.conv.state))
            return
        # No text: the patient may be asleep, and a reply later gets the "closed" text.
        self.end(EndReason.CANCELLED)
