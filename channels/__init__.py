"""HL7 meaning: builders and parsers for each channel, site dialects, escaping and charsets.

No sockets, no SQL: every function takes and returns bytes or typed values. Entry point for the daemon::

    from channels import get_dialect
    ris = get_dialect("ch10-2.5.1", overrides, local=Party("RADSCHED", "RADSCHED"), tz=ZoneInfo(TIMEZONE))
    out = ris.build_slot_query("DTWN", "CT", start, end)      # -> OutboundMessage(control_id, payload)
    slots = ris.parse_slot_response(reply_bytes, out.control_id)

See docs/dialects.md for the message-by-message contract.
"""

from .ack import (
    build_ack,
    build_nak,
    is_enhanced_mode,
    parse_ack,
    read_ack,
    wants_accept_ack,
    wants_application_ack,
)
from .batch import split_messages
from .changes import (
    ChangeKind,
    ChangeRequest,
    ChangeResult,
    change_of_order,
    change_of_siu,
    is_no_show,
)
from .dialects import DIALECTS, Ch10Dialect, Dialect, Qie23Dialect, get_dialect
from .errors import ChannelError, ConfigError, ControlIdMismatch, ParseError, ResponseError
from .escaping import Delimiters, LineBreaks, escape, unescape
from .ids import (
    Clock,
    ControlIdSource,
    fixed_clock,
    random_control_ids,
    sequential_control_ids,
    system_clock,
)
from .limits import MAX_CONTROL_ID, OversizedField, oversized_field, short_control_id
from .message import FieldPath, Message, Segment, SegmentBuilder, parse
from .model import (
    Ack,
    AckCode,
    Appointment,
    BookingRequest,
    BookingResult,
    Location,
    LocationQuery,
    Order,
    OrderRef,
    OutboundMessage,
    Party,
    PatientName,
    PhoneCandidate,
    RequestHeader,
    SiuMessage,
    Slot,
    SlotQuery,
)
from .orders import build_order, parse_order
from .siu import build_siu, parse_siu
from .timestamps import format_ts, parse_ts

__all__ = [
    "DIALECTS",
    "MAX_CONTROL_ID",
    "Ack",
    "AckCode",
    "Appointment",
    "BookingRequest",
    "BookingResult",
    "Ch10Dialect",
    "ChangeKind",
    "ChangeRequest",
    "ChangeResult",
    "ChannelError",
    "Clock",
    "ConfigError",
    "ControlIdMismatch",
    "ControlIdSource",
    "Delimiters",
    "Dialect",
    "FieldPath",
    "LineBreaks",
    "Location",
    "LocationQuery",
    "Message",
    "Order",
    "OrderRef",
    "OutboundMessage",
    "OversizedField",
    "ParseError",
    "Party",
    "PatientName",
    "PhoneCandidate",
    "Qie23Dialect",
    "RequestHeader",
    "ResponseError",
    "Segment",
    "SegmentBuilder",
    "SiuMessage",
    "Slot",
    "SlotQuery",
    "build_ack",
    "build_nak",
    "build_order",
    "build_siu",
    "change_of_order",
    "change_of_siu",
    "escape",
    "fixed_clock",
    "format_ts",
    "get_dialect",
    "is_enhanced_mode",
    "is_no_show",
    "oversized_field",
    "parse",
    "parse_ack",
    "parse_order",
    "parse_siu",
    "parse_ts",
    "random_control_ids",
    "read_ack",
    "sequential_control_ids",
    "short_control_id",
    "split_messages",
    "system_clock",
    "unescape",
    "wants_accept_ack",
    "wants_application_ack",
]
