"""When an appointment's reminders go out: a pure function of the start, the booking time and two settings.

``REMINDERS`` lists durations before the start (``3d,1d`` by default; ``m``, ``h`` or ``d``; ``off`` for none).
A reminder 7 days before is added when the appointment was booked 10 days or more ahead (the cadence
health systems ship, reference/next.md section 3.1). ``REMINDER_WINDOW`` (``09:00-18:00`` local by default,
``off`` for any time) is when a reminder may be sent; one that falls outside it moves to the window's
nearest earlier opening (the most recent ``09:00`` before it) — earlier, never later, so never after the
start. A reminder whose time has already passed when the appointment is booked is skipped, and two that
land on the same instant are sent once.

Days are counted on the local wall clock (``1d`` before Tue 9:30 is Mon 9:30 across a DST change); minutes
and hours are elapsed time. Everything is aware datetimes; results are in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from radsched.conversation.gsm import Encoding, segment_info
from radsched.conversation.keywords import normalise_words
from radsched.conversation.templates import TemplateId, TemplateSet, format_local_time

__all__ = [
    "EXTRA_OFFSET",
    "EXTRA_WHEN_LEAD",
    "PREP_TEMPLATE_ID",
    "REMINDER_TEXTS",
    "Due",
    "Offset",
    "ReminderTexts",
    "ReminderWindow",
    "check_prep_lines",
    "parse_reminder_window",
    "parse_reminders",
    "plan_reminders",
    "send_time",
]

Unit = Literal["m", "h", "d"]
_OFFSET = re.compile(r"([1-9][0-9]{0,4})([mhd])")
_WINDOW = re.compile(r"([0-2]?[0-9]):([0-5][0-9])-([0-2]?[0-9]):([0-5][0-9])")
_OFF = frozenset({"off", "none", ""})
MAX_OFFSETS = 6
MAX_OFFSET = timedelta(days=60)


@dataclass(frozen=True, slots=True, order=True)
class Offset:
    """A duration before the start, e.g. ``Offset(3, "d")``; its ``label`` is the reminder's kind."""

    amount: int
    unit: Unit

    @property
    def label(self) -> str:
        return f"{self.amount}{self.unit}"

    @property
    def rank(self) -> tuple[timedelta, int]:
        """Largest first; of two equal durations (``1d``, ``24h``) the coarser unit wins."""
        return self.approx, "mhd".index(self.unit)

    @property
    def approx(self) -> timedelta:
        """As elapsed time (for ordering and bounds; days are applied on the wall clock)."""
        return {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}[
            self.unit
        ] * self.amount

    def before(self, start: datetime, tz: ZoneInfo) -> datetime:
        if self.unit == "d":
            wall = start.astimezone(tz).replace(tzinfo=None) - timedelta(days=self.amount)
            return _local(wall, tz)
        return start.astimezone(UTC) - self.approx


EXTRA_OFFSET = Offset(7, "d")
"""The 7-day reminder, added only when the lead time is :data:`EXTRA_WHEN_LEAD` or more."""
EXTRA_WHEN_LEAD = timedelta(days=10)


@dataclass(frozen=True, slots=True)
class ReminderWindow:
    """The daily local-time window ``[opens, closes)`` in which reminders are sent (no midnight wrap)."""

    opens: time
    closes: time

    def __post_init__(self) -> None:
        if not self.opens < self.closes:
            raise ValueError("the reminder window must open before it closes on the same day")

    def __str__(self) -> str:
        return f"{self.opens:%H:%M}-{self.closes:%H:%M}"

    def contains(self, moment: datetime, tz: ZoneInfo) -> bool:
        local = moment.astimezone(tz).time().replace(tzinfo=None)
        return self.opens <= local < self.closes

    def opening_at_or_before(self, moment: datetime, tz: ZoneInfo) -> datetime:
        """The most recent opening of the window at or before ``moment`` (UTC)."""
        local = moment.astimezone(tz)
        day = local.date()
        if local.time().replace(tzinfo=None) < self.opens:
            day -= timedelta(days=1)
        opening = _local(datetime.combine(day, self.opens), tz)
        if opening > moment:  # the opening fell in a DST gap and normalised forward past moment
            opening = _local(datetime.combine(day - timedelta(days=1), self.opens), tz)
        return opening

    def next_opening_after(self, moment: datetime, tz: ZoneInfo) -> datetime:
        """The first opening of the window strictly after ``moment`` (UTC)."""
        day = moment.astimezone(tz).date()
        for offset in range(3):
            opening = _local(datetime.combine(day + timedelta(days=offset), self.opens), tz)
            if opening > moment:
                return opening
        raise AssertionError("a window opens every day")


@dataclass(frozen=True, slots=True)
class Due:
    kind: str
    """The offset's label (``7d``, ``3d``, ``1d``, ``2m`` …)."""
    at: datetime
    """When to send, UTC."""


def parse_reminders(text: str) -> tuple[Offset, ...]:
    """``"3d,1d"`` → offsets, largest first; ``"off"`` → none. ValueError names what is wrong."""
    if text.strip().lower() in _OFF:
        return ()
    offsets: set[Offset] = set()
    for part in text.split(","):
        match = _OFFSET.fullmatch(part.strip().lower())
        if match is None:
            raise ValueError(
                f"expected durations like '3d,1d' (m, h or d; or 'off'), got {part.strip()!r}"
            )
        offset = Offset(int(match.group(1)), match.group(2))  # type: ignore[arg-type]
        if offset.approx > MAX_OFFSET:
            raise ValueError(f"{offset.label} is more than {MAX_OFFSET.days} days before the start")
        offsets.add(offset)
    if len(offsets) > MAX_OFFSETS:
        raise ValueError(f"at most {MAX_OFFSETS} reminders")
    return tuple(sorted(offsets, key=lambda o: o.rank, reverse=True))


def parse_reminder_window(text: str) -> ReminderWindow | None:
    """``"09:00-18:00"`` → the window; ``"off"`` → None (any time)."""
    if text.strip().lower() in _OFF:
        return None
    match = _WINDOW.fullmatch(text.replace(" ", ""))
    if match is None:
        raise ValueError(f"expected HH:MM-HH:MM or 'off', got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23:
        raise ValueError(f"hour out of range in {text!r}")
    return ReminderWindow(time(h1, m1), time(h2, m2))


def plan_reminders(
    start: datetime,
    booked_at: datetime,
    offsets: tuple[Offset, ...],
    window: ReminderWindow | None,
    tz: ZoneInfo,
) -> list[Due]:
    """The reminders of an appointment starting at ``start`` booked at ``booked_at``, earliest first."""
    _require_aware(start, "start")
    _require_aware(booked_at, "booked_at")
    if not offsets:
        return []
    wanted = set(offsets)
    if start - booked_at >= EXTRA_WHEN_LEAD:
        wanted.add(EXTRA_OFFSET)
    planned: dict[datetime, str] = {}
    for offset in sorted(wanted, key=lambda o: o.rank, reverse=True):
        at = offset.before(start, tz)
        if window is not None and not window.contains(at, tz):
            at = window.opening_at_or_before(at, tz)
        if at <= booked_at or at >= start:
            continue  # already passed at booking (or the move would not keep it before the start)
        planned.setdefault(at, offset.label)
    return [Due(kind, at) for at, kind in sorted(planned.items())]


def send_time(
    now: datetime, start: datetime, window: ReminderWindow | None, tz: ZoneInfo
) -> datetime | None:
    """When a due reminder found at ``now`` may go: now inside the window, else the next opening if that
    is still before the start, else never (None). Reminders are found late after a daemon was down."""
    if now >= start:
        return None
    if window is None or window.contains(now, tz):
        return now
    opening = window.next_opening_after(now, tz)
    return opening if opening < start else None


# ---- the text ------------------------------------------------------------------------------------------

PREP_TEMPLATE_ID = "reminder_prep"
"""The outbox's template id of a prep line sent as a second text (it did not fit the reminder's segment)."""
REMINDER_TEXTS = (TemplateId.REMINDER.value, PREP_TEMPLATE_ID)
"""The outbox template ids of reminder texts (dropped from the outbox when the phone opts out)."""
_PREP_MAX = 160


def check_prep_lines(table: Mapping[str, Any]) -> dict[str, str]:
    """``[sms.prep]``: procedure code or DICOM modality → one line the site wrote ("Nothing to eat 4 hours
    before."). Refused: placeholders or braces (a prep line is sent as written, never filled in), characters
    outside GSM-7, more than one segment, and the word CANCEL (Twilio's opt-out). ValueError names the key."""
    lines: dict[str, str] = {}
    for key, value in table.items():
        where = f"[sms.prep] {key}"
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: must be a non-empty string")
        line = " ".join(value.split())
        if "{" in line or "}" in line:
            raise ValueError(f"{where}: no placeholders or braces; the line is sent as written")
        info = segment_info(line)
        if info.encoding is not Encoding.GSM7:
            raise ValueError(f"{where}: only GSM-7 characters (no accents GSM-7 lacks, no emoji)")
        if info.units > _PREP_MAX:
            raise ValueError(f"{where}: {info.units} characters; a prep line is one text of 160")
        if any(word.startswith("cancel") for word in normalise_words(line)):
            raise ValueError(f"{where}: must not mention CANCEL (Twilio opts the patient out)")
        lines[str(key).strip().upper()] = line
    return lines


@dataclass(frozen=True, slots=True)
class ReminderTexts:
    """Renders a reminder: the checked template (one segment by construction), then the prep line of the
    procedure code, else of the modality — on the same text when the whole still fits one segment,
    otherwise as a second text right behind it."""

    templates: TemplateSet
    practice_name: str
    scheduling_phone: str
    prep: Mapping[str, str]
    tz: ZoneInfo

    def prep_line(self, procedure_code: str, modality: str) -> str | None:
        return self.prep.get(procedure_code.strip().upper()) or self.prep.get(
            modality.strip().upper()
        )

    def render(
        self,
        *,
        start: datetime,
        location_name: str,
        modality: str,
        procedure_code: str,
        language: str | None,
    ) -> list[tuple[str, str]]:
        """(template id, text) in sending order."""
        lang = self.templates.language(language)
        params = {
            "practice_name": self.practice_name,
            "scheduling_phone": self.scheduling_phone,
            "procedure_type": self.templates.procedure_type(lang, modality),
            "location_name": location_name,
            "time": format_local_time(start.astimezone(self.tz), lang),
        }
        text = self.templates.render(lang, TemplateId.REMINDER, params).text
        prep = self.prep_line(procedure_code, modality)
        if prep is None:
            return [(TemplateId.REMINDER.value, text)]
        together = f"{text}\n{prep}"
        if segment_info(together).single_segment:
            return [(TemplateId.REMINDER.value, together)]
        return [(TemplateId.REMINDER.value, text), (PREP_TEMPLATE_ID, prep)]


def _local(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall time as UTC; a time in a DST gap lands just after the transition."""
    return wall.replace(tzinfo=tz).astimezone(UTC)


def _require_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime")
