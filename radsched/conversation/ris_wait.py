"""Waiting for the RIS instead of sending the patient to the phone (issue 13 item 6).

When a step needs the RIS (locations, slots, a booking) and the RIS does not answer, the
conversation stays in its loading state and asks again later with backoff. The patient is told
once ("we'll text you shortly"); the conversation continues by itself when the RIS answers. Only
after ``ris_wait_max`` without an answer, or when the patient is writing inside quiet hours
(a "shortly" that could land at night is no promise), does the order go to staff with the
call-us text.

Durability comes for free from the conversation row: ``ris_retry_at`` is a ``wake_at`` deadline,
so the timer (one daemon claims a due row) feeds ``Tick``, and the ``Tick`` re-issues the command.
A booking whose outcome is unknown is asked again the same way: booking is idempotent on
(order, slot), so the retry returns the outcome the RIS already has.
"""

from __future__ import annotations

from datetime import timedelta

from radsched.conversation._step import StepBase
from radsched.conversation.model import (
    Audit,
    Book,
    Conversation,
    DeferReason,
    FetchLocations,
    FetchSlots,
    Reschedule,
    State,
)
from radsched.conversation.templates import TemplateId

__all__ = ["RETRY_FIRST", "RETRY_MAX", "RisWaitSteps", "retry_delay", "waiting_command"]

RETRY_FIRST = timedelta(seconds=15)
RETRY_MAX = timedelta(minutes=2)  # a recovered RIS is noticed within two minutes at worst


def retry_delay(retries: int) -> timedelta:
    """15 s, 30 s, 60 s, then every 2 minutes."""
    return min(RETRY_MAX, RETRY_FIRST * (1 << min(retries, 8)))


def waiting_command(
    conv: Conversation, page_size: int
) -> FetchLocations | FetchSlots | Book | Reschedule | None:
    """The RIS command a busy conversation waits for, rebuilt from its state (None: none)."""
    if conv.state is State.LOADING_LOCATIONS:
        return FetchLocations(conv.modality)
    if conv.state is State.LOADING_SLOTS and conv.location is not None:
        after = conv.slots[-1].start if conv.slots else None
        return FetchSlots(conv.location.id, conv.modality, after, page_size)
    slot = conv.chosen_slot
    if conv.state is State.BOOKING and slot is not None:
        return Book(slot.id, slot.location_id, conv.modality)
    if conv.state is State.RESCHEDULING and slot is not None:
        return Reschedule(slot.id, slot.location_id, conv.modality)
    return None


class RisWaitSteps(StepBase):
    """The RIS-down path: wait, retry, continue, or hand over when waiting is no longer kind."""

    def ris_down(self) -> None:
        """The RIS command of the current busy state got no answer."""
        conv = self.conv
        since = conv.ris_wait_since or self.now
        quiet = self.cfg.quiet_hours
        at_night = quiet is not None and quiet.contains(self.now, self.cfg.timezone)
        if self.now - since >= self.cfg.ris_wait_max or at_night:
            self.emit(Audit("ris_wait_over", "quiet_hours" if at_night else "max_wait"))
            booking = conv.state in (State.BOOKING, State.RESCHEDULING)
            self.clear_ris_wait()
            self.call_us(
                DeferReason.BOOKING_OUTCOME_UNKNOWN if booking else DeferReason.RIS_UNAVAILABLE
            )
            return
        retry_at = self.now + retry_delay(conv.ris_retries)
        self.update(ris_wait_since=since, ris_retry_at=retry_at, busy_until=None)
        self.emit(Audit("ris_wait", conv.state))
        if not conv.ris_wait_told:
            self.text(TemplateId.RIS_WAIT)
            self.update(ris_wait_told=True)

    def ris_retry_due(self) -> bool:
        at = self.conv.ris_retry_at
        return at is not None and self.now >= at and self.conv.busy_until is None

    def retry_ris(self) -> None:
        """Ask the RIS again for what the conversation is waiting for."""
        conv = self.conv
        self.update(ris_retry_at=None, ris_retries=conv.ris_retries + 1)
        command = waiting_command(conv, self.cfg.slot_page_size)
        if command is None:  # cannot happen for a state written by this core; hand over
            self.clear_ris_wait()
            self.call_us(DeferReason.RIS_UNAVAILABLE)
            return
        self.emit(command, Audit("ris_retry", conv.state))
        self.busy(conv.state)

    def clear_ris_wait(self) -> None:
        """The RIS answered (or the wait ended). ``ris_wait_told`` stays: the patient is told once."""
        if self.conv.ris_wait_since is not None or self.conv.ris_retry_at is not None:
            self.update(ris_wait_since=None, ris_retry_at=None, ris_retries=0)
