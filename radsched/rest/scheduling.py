"""The REST facade an SMS scheduler expects from an interface engine (DESIGN.md section 6).

``GET /api/ris/locations``, ``GET /api/ris/available-slots`` and ``POST /api/ris/book-appointment``,
authenticated with ``X-API-Key`` (compared in constant time against every configured key), validated with
pydantic (a 400 names the field), answered from :class:`~radsched.scheduling.service.SchedulingService`. Scheduling
errors map to their status and code; the shapes are in :mod:`radsched.rest.openapi`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, tzinfo
from json.encoder import encode_basestring_ascii
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from channels import Location, Slot
from radsched.logs import correlation_id
from radsched.rest import bodies
from radsched.rest.bodies import BadInput
from radsched.rest.errors import error_response
from radsched.scheduling.errors import SchedulingError
from radsched.scheduling.service import BookedAppointment, BookingInput, SchedulingService

Modality = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z0-9]{1,16}$")
]
# Identifiers travel into HL7 fields (escaped there); control characters never make sense in them.
Identifier = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
MAX_DAYS = 31
# A window that stays representable (date.max is 9999-12-31) in every time zone and every backend.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9998, 12, 31)
MAX_SLOTS = 500

M = TypeVar("M", bound=BaseModel)


class LocationsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    modality: Modality


class SlotsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    location: Identifier
    modality: Modality
    date: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    days: int = Field(default=1, ge=1, le=MAX_DAYS)
    # Without it the dialect's query_limit applies (a site option, 50 by default).
    limit: int | None = Field(default=None, ge=1, le=MAX_SLOTS)

    @field_validator("date")
    @classmethod
    def _real_date(cls, value: str) -> str:
        day = date.fromisoformat(value)  # ValueError for 2026-02-30 becomes a 400 naming the field
        if not FIRST_DAY <= day <= LAST_DAY:
            raise ValueError(f"out of range ({FIRST_DAY} to {LAST_DAY})")
        return value


class BookingBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    order_id: Identifier
    mrn: Identifier
    modality: Modality
    location: Identifier
    slot_id: Identifier


def _validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "string_pattern_mismatch":
            message = "has characters or a format that are not allowed"
        raise BadInput(f"{field}: {message}") from None


def _start(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).isoformat()


def location_json(loc: Location) -> dict[str, Any]:
    return {
        "id": loc.id,
        "name": loc.name,
        "address": loc.address,
        "modalities": list(loc.modalities),
    }


def slot_json(slot: Slot, tz: tzinfo) -> dict[str, Any]:
    return {
        "id": slot.id,
        "location": slot.location_id,
        "modality": slot.modality,
        "start": _start(slot.start, tz),
        "duration_minutes": slot.duration_minutes,
    }


class SlotsBody:
    """The available-slots answer exactly as ``json.dumps({"slots": [slot_json(s, tz) ...]})`` writes it,
    built as text: the per-slot dicts and the encoder's walk over them cost more than the rest of the
    request's JSON work, and each start instant is converted and formatted once, not once per answer.

    A slot's row is kept by the slot object itself: answers the RIS repeats give the very same
    (frozen) slots again (channels/dialects/slotmemo.py), so their rows are looked up, not written.
    """

    MAX_STARTS = 8192
    MAX_ROWS = 8192

    def __init__(self, tz: tzinfo) -> None:
        self._tz = tz
        # Instant -> its JSON string in tz. Equal datetimes are the same instant, so they format alike.
        self._starts: dict[datetime, str] = {}
        # id(slot) -> (slot, its row). The slot is held, so its id cannot be reused while the entry
        # lives, and a hit is checked to be that object: a Slot is frozen, so its row is too.
        self._rows: dict[int, tuple[Slot, str]] = {}

    def _start(self, moment: datetime) -> str:
        text = self._starts.get(moment)
        if text is None:
            if len(self._starts) >= self.MAX_STARTS:
                self._starts.clear()
            text = self._starts[moment] = encode_basestring_ascii(_start(moment, self._tz))
        return text

    def _row(self, s: Slot) -> str:
        q = encode_basestring_ascii  # the C function json.dumps uses for every str
        row = (
            f'{{"id": {q(s.id)}, "location": {q(s.location_id)}, "modality": {q(s.modality)}, '
            f'"start": {self._start(s.start)}, "duration_minutes": {int.__repr__(s.duration_minutes)}}}'
        )
        if len(self._rows) >= self.MAX_ROWS:
            self._rows.clear()
        self._rows[id(s)] = (s, row)
        return row

    def __call__(self, slots: Iterable[Slot]) -> str:
        known = self._rows.get
        rows = []
        for s in slots:
            entry = known(id(s))
            rows.append(entry[1] if entry is not None and entry[0] is s else self._row(s))
        return '{"slots": [' + ", ".join(rows) + "]}"


def booking_json(booked: BookedAppointment, tz: tzinfo) -> dict[str, Any]:
    appt = booked.appointment
    return {
        "status": "booked",
        "confirmation_code": appt.confirmation_code,
        "appointment": {
            "id": appt.id,
            "location": appt.slot.location_id,
            "modality": appt.slot.modality,
            "start": _start(appt.slot.start, tz),
            "duration_minutes": appt.slot.duration_minutes,
        },
    }


class RisApi:
    def __init__(self, service: SchedulingService, api_keys: tuple[str, ...], tz: tzinfo) -> None:
        self._service = service
        self._keys = tuple(k.encode() for k in api_keys if k)
        self._tz = tz
        self._slots_body = SlotsBody(tz)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/ris/locations", self.locations, allow_head=False),
            web.get("/api/ris/available-slots", self.available_slots, allow_head=False),
            web.post("/api/ris/book-appointment", self.book),
        ]

    def _authorised(self, request: web.Request) -> web.Response | None:
        supplied = request.headers.get("X-API-Key", "")
        if not supplied:
            return error_response(401, "unauthorized", "missing X-API-Key header")
        candidate = supplied.encode(
            "utf-8", "surrogateescape"
        )  # non-UTF-8 bytes: no match, not 500
        # Compare against every key, without stopping early, so timing says nothing about which matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            return error_response(401, "unauthorized", "unknown API key")
        return None

    async def locations(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        try:
            query = _validate(LocationsQuery, bodies.query(request.query))
            found = await self._service.locations(query.modality)
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        except SchedulingError as exc:
            return error_response(exc.http_status, exc.code, exc.message)
        return web.json_response({"locations": [location_json(loc) for loc in found]})

    async def available_slots(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        try:
            query = _validate(SlotsQuery, bodies.query(request.query))
            day = date.fromisoformat(query.date)
            start = datetime.combine(day, time(0), tzinfo=self._tz)
            end = datetime.combine(day + timedelta(days=query.days), time(0), tzinfo=self._tz)
            found = await self._service.slots(
                query.location, query.modality, start=start, end=end, limit=query.limit
            )
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        except SchedulingError as exc:
            return error_response(exc.http_status, exc.code, exc.message)
        return web.json_response(text=self._slots_body(found))

    async def book(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        try:
            body = _validate(BookingBody, await bodies.read_json_object(request))
            booked = await self._service.book(
                BookingInput(
                    order_id=body.order_id,
                    mrn=body.mrn,
                    slot_id=body.slot_id,
                    location_id=body.location,
                    modality=body.modality,
                    source="rest",
                    correlation_id=correlation_id.get() or "",
                )
            )
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        except SchedulingError as exc:
            return error_response(exc.http_status, exc.code, exc.message)
        # An idempotent repeat answers exactly like the first time (same status, same body).
        return web.json_response(booking_json(booked, self._tz), status=201)


def add_routes(
    app: web.Application, service: SchedulingService, api_keys: tuple[str, ...], tz: tzinfo
) -> None:
    app.router.add_routes(RisApi(service, api_keys, tz).routes())
