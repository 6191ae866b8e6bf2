"""Plumbing shared by every transition: emitting commands, rendering texts, ending, deadlines.

Split from :mod:`radsched.conversation.transition` so that the flow reads without the bookkeeping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from radsched.conversation.config import ConversationConfig
from radsched.conversation.model import (
    TERMINAL_STATES,
    Audit,
    Command,
    Conversation,
    DeferReason,
    DeferToStaff,
    EndConversation,
    EndReason,
    ScheduleWake,
    SendText,
    State,
)
from radsched.conversation.templates import TemplateId

__all__ = ["END_STATE", "StepBase"]

END_STATE = {
    EndReason.BOOKED: State.BOOKED,
    EndReason.RESCHEDULED: State.RESCHEDULED,
    EndReason.OPTED_OUT: State.OPTED_OUT,
    EndReason.DEFERRED: State.DEFERRED_TO_PHONE,
    EndReason.CANCELLED: State.CANCELLED,
    EndReason.EXPIRED: State.EXPIRED,
}


class StepBase:
    """One transition in progress: the new state so far and the commands emitted."""

    def __init__(self, conv: Conversation, now: datetime, cfg: ConversationConfig) -> None:
        self.before = conv
        self.conv = conv
        self.now = now
        self.cfg = cfg
        self.commands: list[Command] = []

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
        self.update(state=END_STATE[reason], end_reason=reason, busy_until=None)

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
            if conv.ris_retry_at is not None:
                deadlines.append(conv.ris_retry_at)
            conv = dataclasses.replace(conv, expires_at=expires, wake_at=min(deadlines))
            if conv.wake_at != self.before.wake_at:
                self.commands.append(ScheduleWake(min(deadlines)))
        return conv, self.commands

    def unrecognised(self) -> None:
        """Repeat the current menu, up to ``max_menu_repeats`` times; then hand over.

        A human stuck in a loop with a bot is the worst outcome, and a bot stuck with us (an
        auto-responder) must not earn unlimited texts either.
        """
        count = self.conv.unrecognised + 1
        self.update(unrecognised=count)
        if count > self.cfg.max_menu_repeats or self.conv.last_menu is None:
            self.call_us(DeferReason.UNRECOGNISED_REPLIES)
            return
        self.emit(self.conv.last_menu)

    def busy(self, state: State) -> None:
        self.update(state=state, busy_until=self.now + self.cfg.busy_timeout, unrecognised=0)
