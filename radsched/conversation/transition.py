"""The conversation as a pure transition: ``step(state, event, now, cfg) -> (state, commands)``.

No I/O, no clock, no randomness: the same inputs always give the same outputs, which is what
lets a conversation survive restarts (the driver stores the state) and read as a playbook in
the tests. The flow is DESIGN.md section 7; docs/sms.md has the full state table.

Rules that hold in every state:

- STOP (and every revocation word, see :mod:`radsched.conversation.keywords`) revokes consent at once.
  A live conversation ends and its order goes to staff; one confirmation text is sent unless
  the conversation was already opted out.
- HELP is answered with the practice name and phone; the state, menu and miss count stay
  as they were (like any reply, it counts as activity for expiry).
- Quiet hours delay only the *first* text of a conversation; replies are never delayed.
- A conversation expires ``idle_expiry`` after the patient's last activity (or after the first
  contact when they never replied), and never lives longer than ``max_lifetime`` after the
  order. Expiry sends no text (it could fall at night); the order goes to staff.
"""

from __future__ import annotations

from datetime import datetime

from radsched.conversation._menus import MenuSteps
from radsched.conversation._step import END_STATE
from radsched.conversation.config import ConversationConfig
from radsched.conversation.keywords import (
    Choice,
    Help,
    Intent,
    More,
    No,
    Places,
    Start,
    Stop,
    Yes,
    classify,
)
from radsched.conversation.model import (
    BUSY_STATES,
    TERMINAL_STATES,
    Audit,
    BookingConfirmed,
    BookingRejected,
    ChangeRequested,
    Command,
    ConsentStatus,
    Conversation,
    ConversationKind,
    DeferReason,
    DeferToStaff,
    EndReason,
    Event,
    FetchLocations,
    InboundText,
    LocationsLoaded,
    OrderCancelled,
    OrderReceived,
    RecordConsent,
    RisDown,
    SlotsLoaded,
    State,
    Tick,
)
from radsched.conversation.templates import TemplateId
from radsched.conversation.waitlist import offers_waitlist

__all__ = ["step"]

_RECENT_SIDS = 8  # Twilio retries a webhook with the same MessageSid; the driver dedupes too


def step(
    conv: Conversation, event: Event, now: datetime, cfg: ConversationConfig
) -> tuple[Conversation, list[Command]]:
    """Apply one event. ``now`` must be aware (UTC is best). Never raises for a valid event."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("step() needs an aware datetime")
    run = _Step(conv, now, cfg)
    run.apply(event)
    return run.finish()


class _Step(MenuSteps):
    """The transition: dispatch, first contact, time, patient texts, the end of booking."""

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
            case ChangeRequested():
                self.on_change(event)
            case InboundText():
                self.on_inbound(event)
            case Tick():
                self.on_tick()
            case OrderCancelled():
                self.on_cancelled()
            case BookingConfirmed():
                self.on_booked(event)
            case LocationsLoaded() | SlotsLoaded() | BookingRejected() | RisDown():
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
        if not event.ris_reachable:
            # The consent text needs no RIS; the first step that does waits for it (ris_wait).
            self.emit(Audit("ris_unreachable_at_order"))
        if not event.modality_enabled:
            # The order goes to staff now; only the "please call us" text may have to wait.
            first = TemplateId.CALL_US
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

    def on_change(self, event: ChangeRequested) -> None:
        """ "2" after the booking: the slot menu at the appointment's location, after its name."""
        if self.conv.state is not State.NEW:
            self.emit(Audit("change_ignored", self.conv.state))
            return
        self.update(
            kind=ConversationKind.RESCHEDULE,
            modality=event.modality,
            change_location_id=event.location_id,
            language=self.cfg.templates.language(event.language),
            last_activity_at=self.now,
            first_contact_at=self.now,
        )
        self.emit(Audit("change_requested"))
        if event.consent == ConsentStatus.REVOKED:
            self.end(EndReason.OPTED_OUT)  # no text: they told us to stop
            return
        # The location's name (and whether it still takes this modality) comes from the RIS.
        self.emit(FetchLocations(self.conv.modality))
        self.busy(State.LOADING_LOCATIONS)

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
        elif self.ris_retry_due():
            self.retry_ris()
        elif conv.busy_until is not None and self.now >= conv.busy_until:
            self.emit(Audit("ris_timeout", conv.state))
            self.on_ris_answer(RisDown())

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
            case Places() if (
                self.conv.state is State.CHOOSING_SLOT
                and self.conv.kind is ConversationKind.RESCHEDULE
            ):
                self.other_locations()
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
                back = END_STATE[ended] if ended and ended is not EndReason.OPTED_OUT else None
                self.update(state=back or State.DEFERRED_TO_PHONE)
                return
        if opted_out or conv.replies_after_end >= self.cfg.max_replies_after_end:
            self.emit(Audit("ignored_after_end", conv.state))
            return
        self.update(replies_after_end=conv.replies_after_end + 1)
        self.text(TemplateId.ENDED)

    def on_booked(self, event: BookingConfirmed) -> None:
        conv = self.conv
        if conv.state is not State.BOOKING and conv.state is not State.RESCHEDULING:
            if conv.end_reason in (EndReason.BOOKED, EndReason.RESCHEDULED):
                self.emit(Audit("duplicate_booking_confirmation"))  # a driver retry
            elif conv.state in TERMINAL_STATES:
                # Booked after STOP, cancel or a timeout: no text; a person must call.
                self.emit(DeferToStaff(DeferReason.BOOKED_AFTER_END), Audit("booked_after_end"))
            else:
                self.emit(Audit("late_ris_answer", "BookingConfirmed"))
            return
        slot, location = conv.chosen_slot, conv.location
        assert slot is not None and location is not None
        start = event.start or slot.start
        moved = conv.state is State.RESCHEDULING
        if moved:
            template = TemplateId.RESCHEDULED
        elif offers_waitlist(start, self.now, self.cfg):
            template = TemplateId.CONFIRMATION_WAITLIST  # "Reply W ..." (waitlist.py)
        else:
            template = TemplateId.CONFIRMATION
        self.text(
            template,
            procedure_type=self.cfg.templates.procedure_type(conv.language, conv.modality),
            location_name=event.location_name or location.name,
            time=self.slot_label(start),
            code=event.confirmation_code,
        )
        self.emit(Audit("rescheduled" if moved else "booked"))
        self.end(EndReason.RESCHEDULED if moved else EndReason.BOOKED)

    def on_cancelled(self) -> None:
        if self.conv.is_over or self.conv.state is State.NEW:
            self.emit(Audit("order_cancelled_after_end", self.conv.state))
            return
        # No text: the patient may be asleep, and a reply later gets the "closed" text.
        self.end(EndReason.CANCELLED)
