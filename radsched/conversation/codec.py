"""Conversation <-> JSON-ready dict, for the driver's ``sms_conversations`` row.

Explicit rather than generic so that a renamed field is a visible change here, and so that
loading an old row fails loudly (``ValueError``) instead of producing a half-built state.
``FORMAT`` is stored with each row; bump it and add a converter when the shape changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from radsched.conversation.model import (
    Conversation,
    ConversationKind,
    EndReason,
    MenuLocation,
    MenuSlot,
    SendText,
    State,
)
from radsched.conversation.templates import TemplateId

__all__ = ["FORMAT", "dump_conversation", "load_conversation"]

FORMAT = 1


def dump_conversation(conv: Conversation) -> dict[str, Any]:
    """A dict of JSON types only (str, int, bool, None, list, dict). Contains no PHI."""
    return {
        "format": FORMAT,
        "id": conv.id,
        "created_at": _time(conv.created_at),
        "state": conv.state.value,
        "language": conv.language,
        "modality": conv.modality,
        "last_activity_at": _time(conv.last_activity_at),
        "expires_at": _time(conv.expires_at),
        "wake_at": _time(conv.wake_at),
        "first_contact_at": _time(conv.first_contact_at),
        "first_template": conv.first_template.value if conv.first_template else None,
        "locations": [{"id": loc.id, "name": loc.name} for loc in conv.locations],
        "excluded_locations": list(conv.excluded_locations),
        "location_offset": conv.location_offset,
        "location_menu": list(conv.location_menu),
        "location": {"id": conv.location.id, "name": conv.location.name} if conv.location else None,
        "slots": [_slot(slot) for slot in conv.slots],
        "more_slots": conv.more_slots,
        "slot_taken": conv.slot_taken,
        "chosen_slot": _slot(conv.chosen_slot) if conv.chosen_slot else None,
        "booking_attempts": conv.booking_attempts,
        "busy_until": _time(conv.busy_until),
        "last_menu": _menu(conv.last_menu) if conv.last_menu else None,
        "unrecognised": conv.unrecognised,
        "replies_after_end": conv.replies_after_end,
        "end_reason": conv.end_reason.value if conv.end_reason else None,
        "recent_message_sids": list(conv.recent_message_sids),
        "ris_wait_since": _time(conv.ris_wait_since),
        "ris_retry_at": _time(conv.ris_retry_at),
        "ris_retries": conv.ris_retries,
        "ris_wait_told": conv.ris_wait_told,
        "kind": conv.kind.value,
        "change_location_id": conv.change_location_id,
    }


def load_conversation(data: Mapping[str, Any]) -> Conversation:
    """Inverse of :func:`dump_conversation`; raises ValueError on an unknown format."""
    if data.get("format") != FORMAT:
        raise ValueError(f"unknown conversation format {data.get('format')!r}")
    try:
        return Conversation(
            id=str(data["id"]),
            created_at=_parse(data["created_at"]) or _missing("created_at"),
            state=State(data["state"]),
            language=str(data["language"]),
            modality=str(data["modality"]),
            last_activity_at=_parse(data["last_activity_at"]),
            expires_at=_parse(data["expires_at"]),
            wake_at=_parse(data["wake_at"]),
            first_contact_at=_parse(data["first_contact_at"]),
            first_template=TemplateId(data["first_template"]) if data["first_template"] else None,
            locations=tuple(MenuLocation(str(x["id"]), str(x["name"])) for x in data["locations"]),
            excluded_locations=tuple(str(x) for x in data["excluded_locations"]),
            location_offset=int(data["location_offset"]),
            location_menu=tuple(str(x) for x in data["location_menu"]),
            location=MenuLocation(str(data["location"]["id"]), str(data["location"]["name"]))
            if data["location"]
            else None,
            slots=tuple(_load_slot(x) for x in data["slots"]),
            more_slots=bool(data["more_slots"]),
            slot_taken=bool(data["slot_taken"]),
            chosen_slot=_load_slot(data["chosen_slot"]) if data["chosen_slot"] else None,
            booking_attempts=int(data["booking_attempts"]),
            busy_until=_parse(data["busy_until"]),
            last_menu=_load_menu(data["last_menu"]) if data["last_menu"] else None,
            unrecognised=int(data["unrecognised"]),
            replies_after_end=int(data["replies_after_end"]),
            end_reason=EndReason(data["end_reason"]) if data["end_reason"] else None,
            recent_message_sids=tuple(str(x) for x in data["recent_message_sids"]),
            # Absent in rows written before the RIS wait existed.
            ris_wait_since=_parse(data.get("ris_wait_since")),
            ris_retry_at=_parse(data.get("ris_retry_at")),
            ris_retries=int(data.get("ris_retries", 0)),
            ris_wait_told=bool(data.get("ris_wait_told", False)),
            # Absent in rows written before change conversations existed.
            kind=ConversationKind(data.get("kind", ConversationKind.BOOKING.value)),
            change_location_id=data.get("change_location_id"),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed conversation: {exc!r}") from None


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("conversation times must carry an offset")
    return parsed


def _missing(name: str) -> datetime:
    raise ValueError(f"conversation field {name} is missing")


def _slot(slot: MenuSlot) -> dict[str, Any]:
    return {
        "id": slot.id,
        "location_id": slot.location_id,
        "start": slot.start.isoformat(),
        "duration_minutes": slot.duration_minutes,
    }


def _load_slot(data: Mapping[str, Any]) -> MenuSlot:
    start = _parse(data["start"]) or _missing("slot start")
    duration = data.get("duration_minutes")
    return MenuSlot(
        str(data["id"]),
        str(data["location_id"]),
        start,
        int(duration) if duration is not None else None,
    )


def _menu(text: SendText) -> dict[str, Any]:
    return {
        "template_id": text.template_id.value,
        "text": text.text,
        "language": text.language,
        "time_sensitive": text.time_sensitive,
        "params": dict(text.params),
    }


def _load_menu(data: Mapping[str, Any]) -> SendText:
    return SendText(
        TemplateId(data["template_id"]),
        str(data["text"]),
        str(data["language"]),
        bool(data["time_sensitive"]),
        {str(k): str(v) for k, v in data["params"].items()},
    )
