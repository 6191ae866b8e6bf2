"""The vocabulary of the conversation engine: state, events in, commands out.

Events are facts, named in the past tense (``OrderReceived``, ``SlotsLoaded``); commands are
imperatives (``SendText``, ``FetchSlots``). All are frozen dataclasses. The conversation state
holds **no PHI**: no phone number, MRN, order id or name. What identifies the patient stays
with the driver, sealed with :class:`radsched.privacy.PhiBox` and keyed by ``Conversation.id``.

The driver contract, in short (docs/sms.md has the long form):

- Load the conversation, call :func:`radsched.conversation.transition.step`, store the new state and
  the commands in one transaction, then perform the commands in order after commit.
- Every ``FetchLocations``/``FetchSlots``/``Book`` must eventually be answered by exactly one
  of ``LocationsLoaded``/``SlotsLoaded``/``BookingConfirmed``/``BookingRejected`` or
  ``RisDown``. A late answer to a conversation that moved on is ignored (audited).
- ``ScheduleWake(at)`` replaces any earlier wake-up for the same conversation: feed ``Tick()``
  at or after ``at``. A spurious or early ``Tick`` is harmless.
- ``EndConversation`` comes last in its batch. Perform it by deleting the sealed PHI - but only
  after the texts and staff hand-offs before it have taken their own sealed copies.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from radsched.conversation.gsm import to_gsm_value
from radsched.conversation.templates import PLACEHOLDER_MAX_LEN, TemplateId

__all__ = [
    "BUSY_STATES",
    "TERMINAL_STATES",
    "Audit",
    "Book",
    "BookingConfirmed",
    "BookingRejected",
    "ChangeRequested",
    "Command",
    "ConsentStatus",
    "Conversation",
    "ConversationKind",
    "DeferReason",
    "DeferToStaff",
    "EndConversation",
    "EndReason",
    "Event",
    "FetchLocations",
    "FetchSlots",
    "InboundText",
    "LocationsLoaded",
    "MenuLocation",
    "MenuSlot",
    "OrderCancelled",
    "OrderReceived",
    "RecordConsent",
    "RejectReason",
    "Reschedule",
    "RisDown",
    "ScheduleWake",
    "SendText",
    "SlotsLoaded",
    "State",
    "Tick",
]


class State(enum.StrEnum):
    NEW = "new"  # created by the driver, OrderReceived not yet applied
    PENDING_FIRST_CONTACT = "pending_first_contact"  # waiting for quiet hours to end
    AWAITING_CONSENT = "awaiting_consent"
    LOADING_LOCATIONS = "loading_locations"  # FetchLocations issued
    CHOOSING_LOCATION = "choosing_location"
    LOADING_SLOTS = "loading_slots"  # FetchSlots issued
    CHOOSING_SLOT = "choosing_slot"
    BOOKING = "booking"  # Book issued
    RESCHEDULING = "rescheduling"  # Reschedule issued (a change conversation)
    BOOKED = "booked"
    RESCHEDULED = "rescheduled"
    OPTED_OUT = "opted_out"
    DEFERRED_TO_PHONE = "deferred_to_phone"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TERMINAL_STATES = frozenset(
    {
        State.BOOKED,
        State.RESCHEDULED,
        State.OPTED_OUT,
        State.DEFERRED_TO_PHONE,
        State.CANCELLED,
        State.EXPIRED,
    }
)
BUSY_STATES = frozenset(
    {State.LOADING_LOCATIONS, State.LOADING_SLOTS, State.BOOKING, State.RESCHEDULING}
)


class ConversationKind(enum.StrEnum):
    """What the conversation is for: booking an order, or moving an appointment booked by text."""

    BOOKING = "booking"
    RESCHEDULE = "reschedule"  # "2" after the booking (issue 13 item 2)


class ConsentStatus(enum.StrEnum):
    """The patient's standing SMS consent, from ``patient_sms_consents`` by phone hash."""

    UNKNOWN = "unknown"
    GRANTED = "granted"
    REVOKED = "revoked"


class DeferReason(enum.StrEnum):
    """Why an order goes to the staff work list (the patient must be called)."""

    OPTED_OUT = "opted_out"
    NOT_TEXTABLE = "not_textable"
    MODALITY_DISABLED = "modality_disabled"
    RIS_UNAVAILABLE = "ris_unavailable"
    PATIENT_DECLINED = "patient_declined"
    UNRECOGNISED_REPLIES = "unrecognised_replies"
    NO_AVAILABILITY = "no_availability"
    BOOKING_REJECTED = "booking_rejected"
    BOOKING_OUTCOME_UNKNOWN = "booking_outcome_unknown"  # RIS timed out during Book
    BOOKED_AFTER_END = "booked_after_end"  # RIS confirmed after opt-out/cancel/timeout
    EXPIRED = "expired"


class EndReason(enum.StrEnum):
    BOOKED = "booked"
    RESCHEDULED = "rescheduled"
    OPTED_OUT = "opted_out"
    DEFERRED = "deferred"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class RejectReason(enum.StrEnum):
    SLOT_TAKEN = "slot_taken"  # RIS said the slot is gone (HTTP 409): offer fresh times
    REJECTED = "rejected"  # any other refusal (HTTP 502, AR): hand to staff


@dataclass(frozen=True, slots=True)
class MenuLocation:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class MenuSlot:
    id: str
    location_id: str
    start: datetime  # aware; a naive time would be read in the daemon's zone, not the practice's
    duration_minutes: int | None = None

    def __post_init__(self) -> None:
        _require_aware(self.start, "MenuSlot.start")


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderReceived:
    """An order for this patient needs scheduling. Only valid in ``State.NEW``.

    ``textable`` is False when the number is missing, invalid or a known landline;
    ``ris_reachable`` is the driver's current view of the RIS (e.g. its circuit breaker);
    ``language`` is a template language such as ``"es"`` (from PID-15), None for the default.
    """

    modality: str
    modality_enabled: bool
    consent: ConsentStatus = ConsentStatus.UNKNOWN
    textable: bool = True
    ris_reachable: bool = True
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeRequested:
    """The patient replied "2" to move their one upcoming appointment. Only valid in ``State.NEW``.

    Starts a change conversation: the slot menu at ``location_id`` (the appointment's), then a
    ``Reschedule`` answered by ``BookingConfirmed`` (the new code) or ``BookingRejected``. The
    appointment id stays with the driver, sealed like an order id.
    """

    modality: str
    location_id: str
    consent: ConsentStatus = ConsentStatus.GRANTED
    language: str | None = None


@dataclass(frozen=True, slots=True)
class InboundText:
    """A patient's reply. ``body`` is never stored in the state or any command."""

    body: str = field(repr=False)
    message_sid: str


@dataclass(frozen=True, slots=True)
class LocationsLoaded:
    locations: tuple[MenuLocation, ...]


@dataclass(frozen=True, slots=True)
class SlotsLoaded:
    """Answer to ``FetchSlots``. ``more_available`` says whether later slots exist."""

    slots: tuple[MenuSlot, ...]
    more_available: bool


@dataclass(frozen=True, slots=True)
class BookingConfirmed:
    """The RIS booked it. ``start``/``location_name`` override the chosen slot's when given."""

    confirmation_code: str
    appointment_id: str | None = None
    start: datetime | None = None
    location_name: str | None = None

    def __post_init__(self) -> None:
        # Checked here, in the driver's hands, because a code cut short in the text would
        # send the patient a wrong code: refuse it before anything is booked on our side.
        limit = PLACEHOLDER_MAX_LEN["code"]
        code = self.confirmation_code
        if not code or to_gsm_value(code, limit) != code:
            raise ValueError(f"confirmation_code must be 1-{limit} plain GSM-7 characters")
        if self.start is not None:
            _require_aware(self.start, "BookingConfirmed.start")


@dataclass(frozen=True, slots=True)
class BookingRejected:
    reason: RejectReason


@dataclass(frozen=True, slots=True)
class RisDown:
    """The last Fetch*/Book failed: RIS unreachable (503) or too slow (504)."""


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """The RIS cancelled the order (ORC-1 = CA)."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; see ``ScheduleWake``."""


Event = (
    OrderReceived
    | ChangeRequested
    | InboundText
    | LocationsLoaded
    | SlotsLoaded
    | BookingConfirmed
    | BookingRejected
    | RisDown
    | OrderCancelled
    | Tick
)


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendText:
    """Text the conversation's phone. ``text`` is rendered and checked to be one segment.

    ``time_sensitive`` texts (menus of times and places) go stale: send them with a short
    Twilio ``ValidityPeriod`` so a queued offer is dropped rather than delivered hours late.
    Audit ``template_id``, never ``text``.
    """

    template_id: TemplateId
    text: str
    language: str
    time_sensitive: bool = False
    params: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FetchLocations:
    modality: str


@dataclass(frozen=True, slots=True)
class FetchSlots:
    """Ask for up to ``count`` slots starting strictly after ``after`` (None: from now)."""

    location_id: str
    modality: str
    after: datetime | None
    count: int


@dataclass(frozen=True, slots=True)
class Book:
    """Book the order (the driver has its id and MRN sealed) into this slot."""

    slot_id: str
    location_id: str
    modality: str


@dataclass(frozen=True, slots=True)
class Reschedule:
    """Move the change conversation's appointment (the driver has its id sealed) to this slot."""

    slot_id: str
    location_id: str
    modality: str


@dataclass(frozen=True, slots=True)
class RecordConsent:
    """Upsert ``patient_sms_consents`` for this phone hash; ``source`` is our keyword constant."""

    granted: bool
    source: str


@dataclass(frozen=True, slots=True)
class Audit:
    """An ``sms_audit_log`` row. ``kind`` and ``detail`` are constants, never patient text."""

    kind: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DeferToStaff:
    """Put the order on the staff work list; it keeps its own sealed copy of the order."""

    reason: DeferReason


@dataclass(frozen=True, slots=True)
class ScheduleWake:
    at: datetime


@dataclass(frozen=True, slots=True)
class EndConversation:
    """The conversation is over: delete its sealed PHI. Always the last command of a batch."""

    reason: EndReason


Command = (
    SendText
    | FetchLocations
    | FetchSlots
    | Book
    | Reschedule
    | RecordConsent
    | Audit
    | DeferToStaff
    | ScheduleWake
    | EndConversation
)


def _require_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime")


# --- state -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conversation:
    """One patient's scheduling conversation for one order. Serialise with ``radsched.conversation.codec``.

    Create with :meth:`new`, then feed ``OrderReceived``. Times are aware datetimes in UTC.
    """

    id: str
    created_at: datetime
    state: State = State.NEW
    language: str = "en"
    modality: str = ""
    last_activity_at: datetime | None = None
    expires_at: datetime | None = None
    wake_at: datetime | None = None
    first_contact_at: datetime | None = None  # planned while pending, actual afterwards
    first_template: TemplateId | None = None  # what the first contact says
    locations: tuple[MenuLocation, ...] = ()  # as loaded
    excluded_locations: tuple[str, ...] = ()  # ids found to have no times soon
    location_offset: int = 0  # paging through the locations menu
    location_menu: tuple[str, ...] = ()  # ids behind "1", "2", … in the last location menu
    location: MenuLocation | None = None  # chosen
    slots: tuple[MenuSlot, ...] = ()  # the slots behind "1", "2", … in the last slot menu
    more_slots: bool = False
    slot_taken: bool = False  # the next slot menu opens with "that time was just taken"
    chosen_slot: MenuSlot | None = None
    booking_attempts: int = 0
    busy_until: datetime | None = None
    last_menu: SendText | None = None  # repeated when a reply is not understood
    unrecognised: int = 0
    replies_after_end: int = 0
    end_reason: EndReason | None = None
    recent_message_sids: tuple[str, ...] = ()
    # Waiting for the RIS to come back (issue 13 item 6, radsched.conversation.ris_wait).
    ris_wait_since: datetime | None = None  # first failure of the current outage
    ris_retry_at: datetime | None = None  # when the RIS command is asked again
    ris_retries: int = 0  # for the backoff
    ris_wait_told: bool = False  # the "we'll text you shortly" text went out
    # A change conversation (issue 13 item 2): the appointment's location, offered first.
    kind: ConversationKind = ConversationKind.BOOKING
    change_location_id: str | None = None

    @classmethod
    def new(cls, conversation_id: str, now: datetime) -> Conversation:
        return cls(id=conversation_id, created_at=now, last_activity_at=now)

    @property
    def is_over(self) -> bool:
        return self.state in TERMINAL_STATES
