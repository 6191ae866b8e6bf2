"""The pure core of the SMS self-scheduling engine: no I/O, no database, no network.

- :func:`step` - the conversation as a transition ``(state, event, now, cfg) -> (state, commands)``
- :mod:`.model` - :class:`Conversation`, the events fed in and the commands to perform
- :class:`ConversationConfig` - practice name, phone, time zone, quiet hours, limits, templates
- :func:`classify` - what an inbound text means (:mod:`.keywords`)
- :class:`TemplateSet` - the checked, one-segment texts in each language (:mod:`.templates`)
- :mod:`.quiet_hours`, :mod:`.gsm`, :mod:`.codec` - helpers the driver also needs

The driver in radsched/sms (database, outbox, RIS calls) performs the commands; docs/sms.md
describes the contract between the two. The driver imports this package, never the reverse:
tests/sms/test_purity.py keeps it that way.
"""

from radsched.conversation.codec import dump_conversation, load_conversation
from radsched.conversation.config import ConversationConfig
from radsched.conversation.keywords import (
    Choice,
    Help,
    Intent,
    More,
    No,
    Start,
    Stop,
    Unknown,
    Yes,
    classify,
)
from radsched.conversation.model import (
    Audit,
    Book,
    BookingConfirmed,
    BookingRejected,
    ChangeRequested,
    Command,
    ConsentStatus,
    Conversation,
    ConversationKind,
    DeferReason,
    DeferToStaff,
    EndConversation,
    EndReason,
    Event,
    FetchLocations,
    FetchSlots,
    InboundText,
    LocationsLoaded,
    MenuLocation,
    MenuSlot,
    OrderCancelled,
    OrderReceived,
    RecordConsent,
    RejectReason,
    Reschedule,
    RisDown,
    ScheduleWake,
    SendText,
    SlotsLoaded,
    State,
    Tick,
)
from radsched.conversation.quiet_hours import QuietHours, parse_quiet_hours
from radsched.conversation.stray import stray_reply
from radsched.conversation.templates import TemplateError, TemplateId, TemplateSet
from radsched.conversation.transition import step

__all__ = [
    "Audit",
    "Book",
    "BookingConfirmed",
    "BookingRejected",
    "ChangeRequested",
    "Choice",
    "Command",
    "ConsentStatus",
    "Conversation",
    "ConversationConfig",
    "ConversationKind",
    "DeferReason",
    "DeferToStaff",
    "EndConversation",
    "EndReason",
    "Event",
    "FetchLocations",
    "FetchSlots",
    "Help",
    "InboundText",
    "Intent",
    "LocationsLoaded",
    "MenuLocation",
    "MenuSlot",
    "More",
    "No",
    "OrderCancelled",
    "OrderReceived",
    "QuietHours",
    "RecordConsent",
    "RejectReason",
    "Reschedule",
    "RisDown",
    "ScheduleWake",
    "SendText",
    "SlotsLoaded",
    "Start",
    "State",
    "Stop",
    "TemplateError",
    "TemplateId",
    "TemplateSet",
    "Tick",
    "Unknown",
    "Yes",
    "classify",
    "dump_conversation",
    "load_conversation",
    "parse_quiet_hours",
    "step",
    "stray_reply",
]
