"""Texts after the booking when the RIS changes an appointment booked by text (issue 13 item 4).

Pure: given what changed and the phone's standing consent, the commands to perform. One text per
change: "no longer booked" with the scheduling phone, or "moved" with the new time and a new code.
A phone that opted out gets nothing (the audit row says so). The conversation that booked the
appointment is over by then, so the text is in the practice's default language.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from radsched.conversation.config import ConversationConfig
from radsched.conversation.model import Audit, Command, ConsentStatus, SendText
from radsched.conversation.templates import TemplateId, format_local_time

__all__ = ["AppointmentNews", "NewsKind", "news_commands"]


class NewsKind(enum.StrEnum):
    CANCELLED = "cancelled"
    MOVED = "moved"


_TEMPLATE = {
    NewsKind.CANCELLED: TemplateId.APPOINTMENT_CANCELLED,
    NewsKind.MOVED: TemplateId.APPOINTMENT_MOVED,
}


@dataclass(frozen=True, slots=True)
class AppointmentNews:
    kind: NewsKind
    modality: str
    start: datetime
    """The new start of a move; the start that is gone for a cancel."""
    code: str = ""
    """The new confirmation code of a move."""


def news_commands(
    news: AppointmentNews, consent: ConsentStatus, cfg: ConversationConfig
) -> list[Command]:
    if consent is ConsentStatus.REVOKED:
        return [Audit("appointment_news_skipped", "opted_out")]
    templates = cfg.templates
    language = templates.default_language
    values = {
        "practice_name": cfg.practice_name,
        "scheduling_phone": cfg.scheduling_phone,
        "procedure_type": templates.procedure_type(language, news.modality),
        "time": format_local_time(news.start.astimezone(cfg.timezone), language),
    }
    if news.kind is NewsKind.MOVED:
        values["code"] = news.code
    template = _TEMPLATE[news.kind]
    rendered = templates.render(language, template, values)
    return [
        SendText(template, rendered.text, language, False, values),
        Audit("appointment_news", news.kind.value),
    ]
