"""Earlier-slot offers, the waitlist (issue 13 item 5). Pure.

A booking further out than ``WAITLIST_MIN_DAYS`` is confirmed with "Reply W for a text if an
earlier time opens" (:func:`offers_waitlist`). After the booking conversation is over, ``W`` joins
the phone's upcoming appointments to the waitlist of their location and modality, and ``W`` again
(or STOP) leaves it. When an appointment there is cancelled, its slot is offered to one waiting
patient at a time, in order of joining (:func:`next_candidate`), with a hold; while that offer is
live — and only then — YES takes it (the lifecycle's reschedule; the RIS has the last word) and NO
passes it to the next patient, as does the hold running out. A slot is never offered to two
patients at once, and never again once it was taken or the RIS refused it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from radsched.conversation.after_booking import Booked, _text, _values
from radsched.conversation.config import ConversationConfig
from radsched.conversation.keywords import No, Yes, classify, normalise_words
from radsched.conversation.model import Audit, Command, ConsentStatus, SendText
from radsched.conversation.templates import TemplateId

__all__ = [
    "Candidate",
    "Outcome",
    "Vacancy",
    "WaitlistReply",
    "next_candidate",
    "offer_text",
    "offers_waitlist",
    "outcome_commands",
    "toggle_commands",
    "waitlist_reply",
]


class WaitlistReply(enum.StrEnum):
    TOGGLE = "waitlist_w"  # join, or leave when already waiting
    TAKE = "waitlist_yes"
    PASS = "waitlist_no"  # noqa: S105 (a reply, not a password)


def offers_waitlist(start: datetime, now: datetime, cfg: ConversationConfig) -> bool:
    """Whether the confirmation of a booking at ``start`` offers the waitlist."""
    return cfg.waitlist_after is not None and start - now > cfg.waitlist_after


def waitlist_reply(body: str, *, live_offer: bool) -> WaitlistReply | None:
    """What a text after the booking means to the waitlist, or None (it goes the usual way).

    YES and NO mean something here only while the phone has a live offer: otherwise they are a
    booking conversation's (or a stray reply's) words."""
    if normalise_words(body) == ("w",):
        return WaitlistReply.TOGGLE
    if not live_offer:
        return None
    intent = classify(body)
    if isinstance(intent, Yes):
        return WaitlistReply.TAKE
    if isinstance(intent, No):
        return WaitlistReply.PASS
    return None


@dataclass(frozen=True, slots=True)
class Vacancy:
    """A slot freed by a cancel: offered only to appointments later than it, at its place."""

    slot_start: datetime
    location_id: str
    modality: str


@dataclass(frozen=True, slots=True)
class Candidate:
    entry_id: int
    joined_at: datetime
    location_id: str
    modality: str
    appointment_start: datetime
    phone_hash: str
    consent: ConsentStatus
    phone_has_live_offer: bool
    phone_busy: bool
    """A live conversation owns the phone's replies (docs/sms.md rule 7): no YES could reach us."""


def next_candidate(
    vacancy: Vacancy,
    candidates: Iterable[Candidate],
    *,
    offered_before: Iterable[int],
    now: datetime,
    hold: timedelta,
) -> Candidate | None:
    """The waiting patient to offer ``vacancy`` to: the first to join among those it is earlier
    for, at the same location and modality, who were not offered it before, can be texted and
    hold no other live offer (a YES must name one slot). None when nobody, or when the slot
    starts before a hold could end."""
    if vacancy.slot_start <= now + hold:
        return None
    seen = set(offered_before)
    fitting = [
        c
        for c in candidates
        if c.entry_id not in seen
        and c.location_id == vacancy.location_id
        and c.modality == vacancy.modality
        and c.appointment_start > vacancy.slot_start
        and c.consent is ConsentStatus.GRANTED
        and not c.phone_has_live_offer
        and not c.phone_busy
    ]
    return min(fitting, key=lambda c: (c.joined_at, c.entry_id), default=None)


def offer_text(vacancy: Vacancy, cfg: ConversationConfig) -> SendText:
    return _text(
        cfg, TemplateId.WAITLIST_OFFER, _values(cfg, Booked(vacancy.modality, vacancy.slot_start))
    )


def toggle_commands(*, joined: bool, booked: Booked, cfg: ConversationConfig) -> list[Command]:
    """``W``: the answer to joining (``joined``) or leaving."""
    if joined:
        return [
            _text(cfg, TemplateId.WAITLIST_JOINED, _values(cfg, booked)),
            Audit("waitlist_joined"),
        ]
    return [_text(cfg, TemplateId.WAITLIST_LEFT, _values(cfg, booked)), Audit("waitlist_left")]


class Outcome(enum.StrEnum):
    KEPT = "kept"  # NO: the patient keeps the time they had
    GONE = "gone"  # YES, but the RIS refused (or the slot went): the time stays
    TAKEN = "taken"  # YES, and the RIS moved the appointment (the new code)


def outcome_commands(
    outcome: Outcome, *, booked: Booked, cfg: ConversationConfig, code: str = ""
) -> list[Command]:
    """The answer to YES or NO. ``booked`` is the appointment as it stands after it."""
    if outcome is Outcome.TAKEN:
        values = _values(cfg, booked) | {"code": code}
        return [_text(cfg, TemplateId.APPOINTMENT_MOVED, values), Audit("waitlist_filled")]
    template = TemplateId.WAITLIST_KEPT if outcome is Outcome.KEPT else TemplateId.WAITLIST_GONE
    return [_text(cfg, template, _values(cfg, booked)), Audit("waitlist_" + outcome.value)]
