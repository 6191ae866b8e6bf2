"""Replies after a booking, and staff's answers to them (issue 13 items 2 and 3). Pure.

After the conversation that booked an appointment is over, a "1" confirms it, a "2" starts a
change conversation (the slot menu at the same location, then the lifecycle's reschedule) and a
"3" asks to cancel it. A cancel is never done on a text alone: it becomes a staff request that a person
approves or denies, and the patient hears the decision. A phone with several upcoming appointments
cannot say which one a digit means, so its reply goes to staff. (CANCEL itself is an opt-out word
at Twilio and in law; it revokes consent like STOP, and the driver raises a staff request for it.)
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from radsched.conversation.config import ConversationConfig
from radsched.conversation.keywords import Choice, classify
from radsched.conversation.model import Audit, Command, ConsentStatus, SendText
from radsched.conversation.templates import TemplateId, format_local_time

__all__ = ["Booked", "Reply", "decision_commands", "reply_commands", "reply_of"]


class Reply(enum.StrEnum):
    CONFIRM = "confirm"
    CHANGE = "change"
    CANCEL = "cancel"


_DIGITS = {1: Reply.CONFIRM, 2: Reply.CHANGE, 3: Reply.CANCEL}


def reply_of(body: str) -> Reply | None:
    """The after-booking meaning of a text, or None (it goes the usual way: STOP, HELP, ...)."""
    intent = classify(body)
    return _DIGITS.get(intent.n) if isinstance(intent, Choice) else None


@dataclass(frozen=True, slots=True)
class Booked:
    """What a text may say of an appointment: no name, no MRN, no procedure text."""

    modality: str
    start: datetime


def _values(cfg: ConversationConfig, booked: Booked | None) -> dict[str, str]:
    language = cfg.templates.default_language
    values = {"practice_name": cfg.practice_name, "scheduling_phone": cfg.scheduling_phone}
    if booked is not None:
        values["procedure_type"] = cfg.templates.procedure_type(language, booked.modality)
        values["time"] = format_local_time(booked.start.astimezone(cfg.timezone), language)
    return values


def _text(cfg: ConversationConfig, template: TemplateId, values: dict[str, str]) -> SendText:
    language = cfg.templates.default_language
    rendered = cfg.templates.render(language, template, values)
    return SendText(template, rendered.text, language, False, values)


def reply_commands(
    reply: Reply, upcoming: Sequence[Booked], cfg: ConversationConfig
) -> tuple[list[Command], str]:
    """The texts and audit rows for ``reply``, and what the driver must record: ``confirmed``
    (the one appointment), ``change`` (start a change conversation for it, which sends the
    menu), or a staff request ``cancel`` / ``unclear``."""
    if len(upcoming) != 1:
        return [
            _text(cfg, TemplateId.REQUEST_TAKEN, _values(cfg, None)),
            Audit("staff_request", "unclear"),
        ], "unclear"
    if reply is Reply.CONFIRM:
        values = _values(cfg, upcoming[0])
        return [
            _text(cfg, TemplateId.REPLY_CONFIRMED, values),
            Audit("appointment_confirmed"),
        ], "confirmed"
    if reply is Reply.CHANGE:
        return [Audit("change_conversation")], "change"
    return [
        _text(cfg, TemplateId.REQUEST_TAKEN, _values(cfg, None)),
        Audit("staff_request", "cancel"),
    ], "cancel"


def decision_commands(
    *, approved: bool, consent: ConsentStatus, booked: Booked | None, cfg: ConversationConfig
) -> list[Command]:
    """The patient's answer to a decided request: never to a phone that has opted out."""
    outcome = "approved" if approved else "denied"
    if consent is ConsentStatus.REVOKED:
        return [Audit("staff_decision_not_texted", outcome)]
    if approved and booked is not None:
        text = _text(cfg, TemplateId.REQUEST_APPROVED, _values(cfg, booked))
    else:
        text = _text(cfg, TemplateId.REQUEST_DENIED, _values(cfg, None))
    return [text, Audit("staff_decision", outcome)]
