"""The simulated RIS's calendar: locations, the modalities they offer, and slot templates.

Slots are computed, not stored: a template says "at DTWN, CT, Monday to Friday, 08:00-17:00, every 30
minutes, 30 minutes long". A slot id names its location, modality and local start
(``DTWN-CT-202611301430``), so the RIS can check a booking against the templates without keeping a list.
Only bookings are state (cancelling one frees its slot; moving one frees the old slot). Slots in the past (by the injectable clock) or beyond ``horizon_days`` are not
offered.

TOML calendar (``radsched sim-ris --calendar FILE``)::

    timezone = "America/New_York"
    horizon_days = 28

    [[locations]]
    id = "DTWN"
    name = "Downtown Imaging"
    address = "100 Main St, Springfield"

    [[templates]]
    location = "DTWN"
    modality = "CT"
    days = ["mon", "tue", "wed", "thu", "fri"]
    start = "08:00"
    end = "17:00"
    every_minutes = 30
    duration_minutes = 30

A location offers the modalities of its templates.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from channels import Location, Slot

Clock = Callable[[], datetime]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CalendarError(ValueError):
    """A calendar file that cannot be used; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Template:
    location_id: str
    modality: str
    weekdays: frozenset[int]
    start: time
    end: time
    every_minutes: int
    duration_minutes: int

    def starts_on(self, day: date, tz: ZoneInfo) -> Iterator[datetime]:
        if day.weekday() not in self.weekdays:
            return
        moment = datetime.combine(day, self.start, tzinfo=tz)
        last = datetime.combine(day, self.end, tzinfo=tz) - timedelta(minutes=self.duration_minutes)
        step = timedelta(minutes=self.every_minutes)
        while moment <= last:
            yield moment
            moment += step


@dataclass(frozen=True, slots=True)
class Booking:
    slot: Slot
    appointment_id: str
    """Ours (the RIS's): SCH-2 of the answer."""
    placer_appointment_id: str
    order_id: str
    filler_order_id: str = ""
    mrn: str = ""
    """Kept so staff-side changes (SIU^S13/S15 sent by the simulator) carry the patient like a real RIS."""
    dialect: str = ""
    """The dialect the booking came in; staff-side SIU go out in it."""


@dataclass
class Calendar:
    locations: tuple[Location, ...]
    templates: tuple[Template, ...]
    tz: ZoneInfo
    horizon_days: int = 28
    clock: Clock = field(default=lambda: datetime.now(UTC))
    bookings: dict[str, Booking] = field(default_factory=dict)
    issued: int = 0
    """RIS appointment ids handed out so far (ids are never re-used after a cancel)."""

    def locations_for(self, modality: str) -> list[Location]:
        code = modality.upper()
        return [loc for loc in self.locations if not code or code in loc.modalities]

    def has_location(self, location_id: str) -> bool:
        return any(loc.id == location_id for loc in self.locations)

    def _templates(self, location_id: str, modality: str) -> list[Template]:
        return [
            t
            for t in self.templates
            if t.location_id == location_id and (not modality or t.modality == modality.upper())
        ]

    def open_slots(
        self,
        location_id: str,
        modality: str,
        start: datetime,
        end: datetime,
        limit: int | None = None,
    ) -> list[Slot]:
        """Open slots starting in [start, end), earliest first; never past ones or beyond the horizon."""
        now = self.clock()
        lower = max(start, now)
        upper = min(end, now + timedelta(days=self.horizon_days))
        templates = self._templates(location_id, modality)
        out: list[Slot] = []
        day = lower.astimezone(self.tz).date()
        last_day = upper.astimezone(self.tz).date()
        while day <= last_day:
            found = sorted((moment, t) for t in templates for moment in t.starts_on(day, self.tz))
            for moment, t in found:
                if not lower <= moment < upper:
                    continue
                slot = self._slot(t, moment)
                if slot.id in self.bookings:
                    continue
                out.append(slot)
                if limit is not None and len(out) >= limit:
                    return out
            day += timedelta(days=1)
        return out

    def _slot(self, template: Template, moment: datetime) -> Slot:
        slot_id = f"{template.location_id}-{template.modality}-{moment.strftime('%Y%m%d%H%M')}"
        return Slot(
            slot_id, template.location_id, template.modality, moment, template.duration_minutes
        )

    def find(self, slot_id: str) -> Slot | None:
        """The slot named by ``slot_id`` if a template offers it now (booked or not)."""
        location_id, sep, rest = slot_id.partition("-")
        modality, sep2, stamp = rest.partition("-")
        if not (sep and sep2 and len(stamp) == 12 and stamp.isdigit()):
            return None
        try:
            moment = datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=self.tz)
        except ValueError:
            return None
        now = self.clock()
        if moment < now or moment > now + timedelta(days=self.horizon_days):
            return None
        for t in self._templates(location_id, modality):
            if moment in set(t.starts_on(moment.date(), self.tz)):
                return self._slot(t, moment)
        return None

    def book(
        self,
        slot_id: str,
        *,
        placer_appointment_id: str,
        order_id: str,
        filler_order_id: str = "",
        mrn: str = "",
        dialect: str = "",
    ) -> Booking | str:
        """Book ``slot_id``; returns the booking, or why not (a short reason for MSA-3)."""
        slot = self.find(slot_id)
        if slot is None:
            return "unknown or past slot"
        if slot_id in self.bookings:
            return "slot already booked"
        self.issued += 1
        booking = Booking(
            slot,
            appointment_id=f"SIM{self.issued:07d}",
            placer_appointment_id=placer_appointment_id,
            order_id=order_id,
            filler_order_id=filler_order_id,
            mrn=mrn,
            dialect=dialect,
        )
        self.bookings[slot_id] = booking
        return booking

    def lookup(self, *ids: str) -> Booking | None:
        """The booking any of ``ids`` names: our appointment id (SIM...), the slot id, or the placer's id."""
        wanted = {i for i in ids if i}
        for slot_id, booking in self.bookings.items():
            if wanted & {slot_id, booking.appointment_id, booking.placer_appointment_id}:
                return booking
        return None

    def cancel(self, booking: Booking) -> None:
        """Cancel ``booking``: its slot is offered again."""
        self.bookings.pop(booking.slot.id, None)

    def slot_at(self, location_id: str, modality: str, start: datetime) -> Slot | None:
        """The template slot at ``location_id``/``modality`` starting at ``start`` (how SRM^S02 names it)."""
        local = start.astimezone(self.tz)
        return self.find(f"{location_id}-{modality.upper()}-{local.strftime('%Y%m%d%H%M')}")

    def move(self, booking: Booking, slot_id: str) -> Booking | str:
        """Move ``booking`` to ``slot_id`` (same RIS appointment id); the old slot is freed. On refusal
        (why, for MSA-3) the booking stands unchanged."""
        slot = self.find(slot_id)
        if slot is None:
            return "unknown or past slot"
        if slot_id == booking.slot.id:
            return booking
        if slot_id in self.bookings:
            return "slot already booked"
        moved = replace(booking, slot=slot)
        del self.bookings[booking.slot.id]
        self.bookings[slot_id] = moved
        return moved


def default_calendar(
    *, tz: ZoneInfo | None = None, clock: Clock | None = None, horizon_days: int = 28
) -> Calendar:
    """Three locations, weekdays 08:00-17:00: CR/DX every 15 min, CT/US/MR every 30 min."""
    zone = tz or ZoneInfo("America/New_York")
    weekdays = frozenset(range(5))
    day_start, day_end = time(8, 0), time(17, 0)
    layout = {
        ("DTWN", "Downtown Imaging", "100 Main St, Springfield"): ("CR", "DX", "CT", "US"),
        ("NRTH", "North Campus Radiology", "2200 North Ave, Springfield"): ("MR", "CT", "CR", "DX"),
        ("WEST", "Westside Outpatient Imaging", "77 West Rd, Springfield"): (
            "US",
            "DX",
            "CR",
            "MR",
        ),
    }
    rhythm = {"CR": (15, 15), "DX": (15, 15), "CT": (30, 30), "US": (30, 30), "MR": (30, 30)}
    locations: list[Location] = []
    templates: list[Template] = []
    for (loc_id, name, address), modalities in layout.items():
        locations.append(Location(loc_id, name, address, modalities))
        for modality in modalities:
            every, duration = rhythm[modality]
            templates.append(
                Template(loc_id, modality, weekdays, day_start, day_end, every, duration)
            )
    return Calendar(
        tuple(locations),
        tuple(templates),
        zone,
        horizon_days,
        clock or (lambda: datetime.now(UTC)),
    )


def _hhmm(value: object, where: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise CalendarError(f"{where}: {value!r} is not a HH:MM time") from None


def _template(raw: dict[str, Any], index: int, known: set[str]) -> Template:
    where = f"templates[{index}]"
    try:
        location = str(raw["location"])
        modality = str(raw["modality"]).upper()
    except KeyError as exc:
        raise CalendarError(f"{where}: missing {exc.args[0]!r}") from None
    if location not in known:
        raise CalendarError(f"{where}: unknown location {location!r}")
    days = raw.get("days", list(WEEKDAYS[:5]))
    try:
        weekdays = frozenset(WEEKDAYS.index(str(d).lower()[:3]) for d in days)
    except ValueError:
        raise CalendarError(f"{where}: days must be names like 'mon'") from None
    every = int(raw.get("every_minutes", 30))
    duration = int(raw.get("duration_minutes", every))
    if not (1 <= every <= 1440 and 1 <= duration <= 1440):
        raise CalendarError(f"{where}: every_minutes and duration_minutes must be 1..1440")
    return Template(
        location,
        modality,
        weekdays,
        _hhmm(raw.get("start", "08:00"), f"{where}.start"),
        _hhmm(raw.get("end", "17:00"), f"{where}.end"),
        every,
        duration,
    )


def load_calendar(path: Path, *, clock: Clock | None = None) -> Calendar:
    """Read a TOML calendar (format in the module docstring); raises :class:`CalendarError`."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CalendarError(f"{path}: {exc}") from None
    try:
        tz = ZoneInfo(str(data.get("timezone", "America/New_York")))
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError(f"{path}: unknown timezone {data.get('timezone')!r}") from None
    raw_locations = data.get("locations", [])
    raw_templates = data.get("templates", [])
    if not raw_locations or not raw_templates:
        raise CalendarError(f"{path}: needs at least one [[locations]] and one [[templates]]")
    known = {str(loc.get("id", "")) for loc in raw_locations}
    templates = [_template(t, i, known) for i, t in enumerate(raw_templates)]
    locations = []
    for i, loc in enumerate(raw_locations):
        if not loc.get("id"):
            raise CalendarError(f"{path}: locations[{i}] has no id")
        offered = tuple(dict.fromkeys(t.modality for t in templates if t.location_id == loc["id"]))
        locations.append(
            Location(str(loc["id"]), str(loc.get("name", "")), str(loc.get("address", "")), offered)
        )
    return Calendar(
        tuple(locations),
        tuple(templates),
        tz,
        int(data.get("horizon_days", 28)),
        clock or (lambda: datetime.now(UTC)),
    )
