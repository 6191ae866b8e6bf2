"""Texts from a number that has no conversation (never had one, or its row was purged)."""

from __future__ import annotations

from datetime import datetime

from radsched.conversation.config import ConversationConfig
from radsched.conversation.model import Command, ConsentStatus, Conversation, InboundText, State
from radsched.conversation.transition import step

__all__ = ["stray_reply"]


def stray_reply(
    event: InboundText,
    consent: ConsentStatus,
    recent_replies: int,
    now: datetime,
    cfg: ConversationConfig,
) -> list[Command]:
    """What to do with a text that belongs to no conversation.

    It is answered exactly like a text after a conversation ended, so the rules cannot drift
    apart: STOP revokes (one confirmation unless ``consent`` is already REVOKED), START - and
    YES when revoked - re-subscribes, HELP is answered, anything else gets the "closed, call
    us" text only while ``recent_replies`` (how many such answers this phone hash got in the
    last day, from the audit log) is below ``cfg.max_replies_after_end``, so that an
    auto-responder on the other end cannot ping-pong with us.
    """
    revoked = consent is ConsentStatus.REVOKED
    ghost = Conversation(
        id="",
        created_at=now,
        state=State.OPTED_OUT if revoked else State.DEFERRED_TO_PHONE,
        language=cfg.templates.default_language,
        replies_after_end=recent_replies,
    )
    _, commands = step(ghost, event, now, cfg)
    return commands
