"""The engine's knobs, checked once when the daemon builds them from settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta
from zoneinfo import ZoneInfo

from radsched.conversation.gsm import to_gsm_value
from radsched.conversation.quiet_hours import QuietHours
from radsched.conversation.templates import PLACEHOLDER_MAX_LEN, TemplateId, TemplateSet

__all__ = ["ConversationConfig"]

_SLOT_LABEL_LEN = PLACEHOLDER_MAX_LEN["time"]
_SLOT_MENUS = (TemplateId.SLOT_MENU, TemplateId.SLOT_TAKEN)


@dataclass(frozen=True)
class ConversationConfig:
    """Everything :func:`radsched.conversation.transition.step` needs besides state, event and time.

    ``practice_name`` and ``scheduling_phone`` must be GSM-7 text no longer than the template
    budget (30 and 16 characters): they are in every text, so they are checked, not cut.
    """

    practice_name: str
    scheduling_phone: str
    templates: TemplateSet = field(default_factory=TemplateSet.default)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("America/New_York"))
    quiet_hours: QuietHours | None = field(
        default_factory=lambda: QuietHours(time(20, 0), time(9, 0))
    )
    slots_per_page: int = 3  # NYU: three recommended slots doubled self-scheduling
    max_menu_repeats: int = 2  # unrecognised replies answered with the menu again
    idle_expiry: timedelta = timedelta(hours=24)  # DESIGN.md section 7.6
    max_lifetime: timedelta = timedelta(hours=72)  # hard cap on holding PHI, whatever happens
    busy_timeout: timedelta = timedelta(minutes=10)  # a Fetch*/Book left unanswered
    ris_wait_max: timedelta = timedelta(minutes=30)  # RIS_WAIT_MAX_MIN: then staff call instead
    # WAITLIST_MIN_DAYS: a booking further out than this is offered the waitlist (None: never).
    waitlist_after: timedelta | None = None
    max_booking_attempts: int = 3  # slot-taken retries before handing to staff
    max_replies_after_end: int = 1  # answers to texts after the end; bounds bot ping-pong
    slot_page_size: int = field(init=False)

    def __post_init__(self) -> None:
        for name in ("practice_name", "scheduling_phone"):
            value: str = getattr(self, name)
            limit = PLACEHOLDER_MAX_LEN[name]
            if not value.strip() or to_gsm_value(value, limit) != value.strip():
                raise ValueError(
                    f"{name.upper()}: must be 1-{limit} characters of GSM-7 text "
                    "(no accents outside GSM-7, no emoji)"
                )
        if self.slots_per_page < 1:
            raise ValueError("slots_per_page must be at least 1")
        for name in ("max_menu_repeats", "max_booking_attempts", "max_replies_after_end"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.idle_expiry <= timedelta(0) or self.max_lifetime < self.idle_expiry:
            raise ValueError("idle_expiry must be positive and max_lifetime at least as long")
        # The engine, not the operator, decides how many slots fit in one segment.
        fit = min(
            self.templates.menu_capacity(language, tid, _SLOT_LABEL_LEN)
            for language in self.templates.languages
            for tid in _SLOT_MENUS
        )
        object.__setattr__(self, "slot_page_size", max(1, min(self.slots_per_page, fit)))
