"""Shadow mode's comparison: where radsched's answer and the shadowed engine's answer differ (pure).

During a parallel run (``SHADOW_URL``) the gateway answers each read itself and asks the engine it is
replacing the same question. Two answers agree when they list the same locations (by id, with the same
name) and the same slots — a slot is identified by its start instant, location and modality, because
each engine makes up its own slot ids. What differs is a :class:`Mismatch` of one of the :data:`KINDS`.

A mismatch carries ids and calendar facts only (location ids, modality, slot start, slot ids, durations,
error codes): nothing about a patient, so it may be logged, counted and stored as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from channels import Location, Slot

__all__ = [
    "KINDS",
    "Call",
    "Kind",
    "Mismatch",
    "compare_errors",
    "compare_locations",
    "compare_slots",
]

Call = Literal["locations", "available-slots"]
Kind = Literal[
    "location_only_here",
    "location_only_shadow",
    "location_name_differs",
    "slot_only_here",
    "slot_only_shadow",
    "slot_duration_differs",
    "shadow_failed",
    "here_failed",
]
KINDS: tuple[Kind, ...] = (
    "location_only_here",  # we list a location the shadowed engine does not
    "location_only_shadow",  # the shadowed engine lists one we do not
    "location_name_differs",  # same id, different name (what the patient would read)
    "slot_only_here",  # a start we offer at that location and modality, the other engine does not
    "slot_only_shadow",  # the other way round
    "slot_duration_differs",  # same start, location and modality, different length
    "shadow_failed",  # we answered; the shadowed engine failed or was too slow (error code in detail)
    "here_failed",  # the shadowed engine answered; we failed (error code in detail)
)


@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: Kind
    call: Call
    modality: str
    location_id: str = ""
    slot_start: datetime | None = None
    here_id: str = ""
    """Our slot id (or location id) where we have one."""
    shadow_id: str = ""
    """The shadowed engine's slot id (or location id) where it has one."""
    detail: str = ""
    """Short and PHI-free: durations, an error code."""


def compare_locations(
    modality: str, here: Sequence[Location], shadow: Sequence[Location]
) -> list[Mismatch]:
    """Locations offering ``modality`` on each side, compared by id (and then name)."""
    ours = {loc.id: loc for loc in here}
    theirs = {loc.id: loc for loc in shadow}
    out: list[Mismatch] = []
    for loc_id in sorted(ours.keys() | theirs.keys()):
        mine, other = ours.get(loc_id), theirs.get(loc_id)
        if other is None:
            out.append(
                Mismatch("location_only_here", "locations", modality, loc_id, here_id=loc_id)
            )
        elif mine is None:
            out.append(
                Mismatch("location_only_shadow", "locations", modality, loc_id, shadow_id=loc_id)
            )
        elif _name(mine.name) != _name(other.name):
            out.append(
                Mismatch(
                    "location_name_differs",
                    "locations",
                    modality,
                    loc_id,
                    here_id=loc_id,
                    shadow_id=loc_id,
                )
            )
    return out


def compare_slots(here: Sequence[Slot], shadow: Sequence[Slot]) -> list[Mismatch]:
    """Open slots for the same question, compared by (start, location, modality).

    A location with two scanners may offer two slots at one start: each side's slots at a start are
    paired shortest first, and what is left over on one side is a slot only that side offers. When
    both sides listed slots, only starts up to the earlier of the two last starts are compared: an
    engine may cap a list (a result limit) where the other does not, and a difference past the cut
    says nothing about the calendars.
    """
    ours, theirs = _by_key(here), _by_key(shadow)
    horizon: datetime | None = None
    if ours and theirs:
        horizon = min(max(k[0] for k in ours), max(k[0] for k in theirs))
    out: list[Mismatch] = []
    for key in sorted(ours.keys() | theirs.keys()):
        start, loc, mod = key
        if horizon is not None and start > horizon:
            break
        mine, other = ours.get(key, []), theirs.get(key, [])
        for a, b in zip(mine, other, strict=False):
            if a.duration_minutes != b.duration_minutes:
                out.append(
                    Mismatch(
                        "slot_duration_differs",
                        "available-slots",
                        mod,
                        loc,
                        start,
                        here_id=a.id,
                        shadow_id=b.id,
                        detail=f"{a.duration_minutes} vs {b.duration_minutes} min",
                    )
                )
        out.extend(
            Mismatch("slot_only_here", "available-slots", mod, loc, start, here_id=a.id)
            for a in mine[len(other) :]
        )
        out.extend(
            Mismatch("slot_only_shadow", "available-slots", mod, loc, start, shadow_id=b.id)
            for b in other[len(mine) :]
        )
    return out


def compare_errors(
    call: Call,
    modality: str,
    location_id: str,
    *,
    here_error: str | None,
    shadow_error: str | None,
) -> list[Mismatch]:
    """One side failed (error codes such as ``ris_timeout``); both failing is agreement of a kind."""
    if here_error and not shadow_error:
        return [Mismatch("here_failed", call, modality, location_id, detail=here_error)]
    if shadow_error and not here_error:
        return [Mismatch("shadow_failed", call, modality, location_id, detail=shadow_error)]
    return []


def _by_key(slots: Sequence[Slot]) -> dict[tuple[datetime, str, str], list[Slot]]:
    grouped: dict[tuple[datetime, str, str], list[Slot]] = {}
    for slot in slots:
        grouped.setdefault((slot.start, slot.location_id, slot.modality.upper()), []).append(slot)
    for group in grouped.values():
        group.sort(key=lambda s: (s.duration_minutes, s.id))
    return grouped


def _name(text: str) -> str:
    # Case and spacing are presentation; "North Campus" vs "NORTH  CAMPUS" is the same place.
    return " ".join(text.split()).casefold()
