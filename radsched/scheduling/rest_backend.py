"""The SMS engine's RIS over REST: an existing engine's three channels (``SCHEDULING_BACKEND=rest``).

``GET {url}/locations?modality=``, ``GET {url}/available-slots?location=&modality=&date=&days=`` and
``POST {url}/book-appointment`` — the channels of the source design, which QIE serves and which a radsched
daemon in the ``gateway`` role serves under ``/api/ris`` (DESIGN.md section 6). The same client asks the
shadowed engine in shadow mode (:mod:`radsched.shadow_gateway`).

Everything that can go wrong with a peer over HTTP ends in one of the scheduling errors of
:mod:`radsched.scheduling.errors`, so the conversation behaves exactly as on the HL7 path: 409 → the slot is
taken (other times are offered), unreachable / 5xx / too slow / unreadable → the RIS-down path (call-us
text, order kept for staff). Bounded on purpose: every call has a total deadline (a body that trickles in
is cut off), an answer larger than ``REST_MAX_RESPONSE_BYTES`` is refused, redirects are not followed
(a login page or a moved engine is an operator's problem, not something to chase), and only JSON of the
documented shape is accepted. Reads are retried once after a connection failure or a 502/503 (they are
idempotent); a booking is never retried here (an engine need not de-duplicate it).

Errors name the engine, the call and the status, never the request's patient data; the engine's own
error message is not repeated either (it may echo an MRN), only its error code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from time import monotonic, perf_counter
from typing import Any, Literal, TypeVar

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

import channels
from channels import Location, Slot
from radsched.logs import correlation_id
from radsched.scheduling.errors import (
    RisFailed,
    RisTimeout,
    RisUnavailable,
    SchedulingError,
    SlotUnavailable,
    UnknownLocation,
    UnknownOrder,
)
from radsched.scheduling.service import BookedAppointment, BookingInput

log = logging.getLogger("radsched.scheduling.rest")

__all__ = [
    "EngineEndpoint",
    "RestBooking",
    "RestEngineClient",
    "RestMetrics",
    "RestScheduling",
]

#: How long a transport failure makes :attr:`RestEngineClient.reachable` say False.
RECHECK_S = 15.0
#: The REST facade answers at most 31 days per slot query (radsched.rest.scheduling.MAX_DAYS).
MAX_DAYS = 31
_CHUNK = 64 * 1024
_ERROR_CODE_MAX = 64

Call = Literal["locations", "available-slots", "book-appointment"]
M = TypeVar("M", bound=BaseModel)


# ---- the contract's shapes (DESIGN.md section 6), as the client reads them --------------------------


class _Loose(BaseModel):
    # Extra fields are an engine's business; missing or mistyped ones are not.
    model_config = ConfigDict(extra="ignore")


class _Location(_Loose):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=200)
    address: str = Field(default="", max_length=400)
    modalities: list[str] = Field(default_factory=list, max_length=64)


class _Locations(_Loose):
    locations: list[_Location] = Field(max_length=10_000)


class _Slot(_Loose):
    # A booked appointment has the same fields as the slot it took.
    id: str = Field(min_length=1, max_length=64)
    location: str = Field(min_length=1, max_length=64)
    modality: str = Field(min_length=1, max_length=16)
    start: AwareDatetime
    duration_minutes: int = Field(ge=1, le=1440)


class _Slots(_Loose):
    slots: list[_Slot] = Field(max_length=10_000)


class _Booked(_Loose):
    status: Literal["booked"]
    confirmation_code: str = Field(min_length=1, max_length=32)
    appointment: _Slot


# ---- configuration and metrics ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineEndpoint:
    """One engine's REST channels and how to reach them."""

    name: Literal["scheduling", "shadow"]
    """For errors, logs and metrics; also says which settings configure it."""
    base_url: str
    api_key: str
    api_key_header: str = "X-API-Key"
    timeout_s: float = 10.0
    max_response_bytes: int = 1024 * 1024

    @property
    def setting(self) -> str:
        return f"RADSCHED_{self.name.upper()}_URL"


class RestMetrics:
    """Calls to REST engines, by engine, call and result; registered once per registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.calls = Counter(
            "radsched_rest_engine_calls",
            "Calls to a REST scheduling engine, by engine (scheduling, shadow), call and result",
            ["engine", "call", "result"],
            registry=registry,
        )
        self.seconds = Histogram(
            "radsched_rest_engine_call_seconds",
            "Time of a call to a REST scheduling engine, retries included",
            ["engine", "call"],
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class RestBooking:
    """What the engine confirmed; no patient data."""

    appointment_id: str
    confirmation_code: str
    slot: Slot


# ---- the client -----------------------------------------------------------------------------------------


class RestEngineClient:
    """The three REST channels of one engine, with deadlines, bounds and the error mapping above."""

    def __init__(
        self,
        endpoint: EngineEndpoint,
        *,
        tz: tzinfo,
        metrics: RestMetrics | None = None,
        read_retries: int = 1,
        retry_delay_s: float = 0.2,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._tz = tz
        self._metrics = metrics or RestMetrics(None)
        self._read_retries = read_retries
        self._retry_delay = retry_delay_s
        self._session = session
        self._own_session = session is None
        self._failed_at: float | None = None

    @property
    def reachable(self) -> bool:
        """False for ``RECHECK_S`` after the engine was unreachable or too slow; True once it answers."""
        return self._failed_at is None or monotonic() - self._failed_at > RECHECK_S

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.endpoint.timeout_s),
                # The engine is configured by URL: no cookies, no proxy settings from the environment.
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                raise_for_status=False,
            )
        return self._session

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # ---- the three channels --------------------------------------------------------------------

    async def locations(self, modality: str) -> list[Location]:
        body = await self._request("locations", "GET", {"modality": modality}, _Locations)
        return [
            Location(loc.id, loc.name, loc.address, tuple(m.upper() for m in loc.modalities))
            for loc in body.locations
        ]

    async def slots(
        self,
        location_id: str,
        modality: str,
        *,
        start: datetime,
        end: datetime,
        limit: int | None = None,
    ) -> list[Slot]:
        """Open slots starting in [start, end), earliest first, at most ``limit``.

        The channel takes a local date and a number of days, so the answer is trimmed to the window
        here; ``limit`` is applied here too, because an engine counting from midnight would otherwise
        spend it on the morning that has already passed. The source design's channel has no
        ``days``: an engine that answers for the one ``date`` only is asked again day by day (at
        most ``MAX_DAYS`` calls) until ``limit`` slots are found or the window ends.
        """
        day = start.astimezone(self._tz).date()
        span = _days(day, end, self._tz)
        found: list[Slot] = []
        for call in range(span):
            listed = await self._slots_from(location_id, modality, day, span - call)
            found.extend(s for s in listed if start <= s.start < end)
            enough = limit is not None and len(found) >= limit
            # A slot after the asked date shows the engine honours ``days``: this answer is whole.
            whole = any(s.start.astimezone(self._tz).date() > day for s in listed)
            if enough or whole:
                break
            day += timedelta(days=1)
        found.sort(key=lambda s: s.start)
        return found[:limit] if limit is not None else found

    async def _slots_from(
        self, location_id: str, modality: str, day: date, days: int
    ) -> list[Slot]:
        params = {
            "location": location_id,
            "modality": modality,
            "date": day.isoformat(),
            "days": str(days),
        }
        body = await self._request("available-slots", "GET", params, _Slots)
        return [
            Slot(s.id, s.location, s.modality.upper(), s.start, s.duration_minutes)
            for s in body.slots
        ]

    async def book(
        self, *, order_id: str, mrn: str, modality: str, location_id: str, slot_id: str
    ) -> RestBooking:
        payload = {
            "order_id": order_id,
            "mrn": mrn,
            "modality": modality,
            "location": location_id,
            "slot_id": slot_id,
        }
        body = await self._request("book-appointment", "POST", payload, _Booked)
        appt = body.appointment
        slot = Slot(
            slot_id, appt.location, appt.modality.upper(), appt.start, appt.duration_minutes
        )
        return RestBooking(appt.id, body.confirmation_code, slot)

    # ---- one call -------------------------------------------------------------------------------

    async def _request(self, call: Call, method: str, data: dict[str, str], shape: type[M]) -> M:
        attempts = 1 + (self._read_retries if method == "GET" else 0)
        started = perf_counter()
        result = "error"
        try:
            for attempt in range(attempts):
                try:
                    status, content_type, raw = await self._exchange(call, method, data)
                except RisUnavailable:
                    if attempt + 1 < attempts:
                        await asyncio.sleep(self._retry_delay * (1 + random.random()))
                        continue
                    result = "unreachable"
                    raise
                if status in (502, 503) and attempt + 1 < attempts:
                    await asyncio.sleep(self._retry_delay * (1 + random.random()))
                    continue
                parsed = self._answer(call, status, content_type, raw, shape)
                result = "ok"
                return parsed
            raise AssertionError("unreachable: the last attempt returns or raises")
        except RisTimeout:
            result = "timeout"
            raise
        except SchedulingError as exc:
            if result == "error":
                result = exc.code
            raise
        finally:
            if result in ("unreachable", "timeout"):
                self._failed_at = monotonic()
            elif result != "error":
                self._failed_at = None  # it answered, whatever it said
            self._metrics.calls.labels(self.endpoint.name, call, result).inc()
            self._metrics.seconds.labels(self.endpoint.name, call).observe(perf_counter() - started)

    async def _exchange(
        self, call: Call, method: str, data: dict[str, str]
    ) -> tuple[int, str, bytes]:
        ep = self.endpoint
        headers = {
            ep.api_key_header: ep.api_key,
            "Accept": "application/json",
            "X-Request-Id": correlation_id.get() or uuid.uuid4().hex[:16],
        }
        url = f"{ep.base_url}/{call}"
        kwargs: dict[str, Any] = {"params": data} if method == "GET" else {"json": data}
        try:
            async with asyncio.timeout(ep.timeout_s):
                async with self._http().request(
                    method, url, headers=headers, allow_redirects=False, **kwargs
                ) as response:
                    raw = await self._bounded_body(call, response)
                    return response.status, response.content_type, raw
        except TimeoutError:
            raise RisTimeout(
                f"the {ep.name} engine did not answer {call} within {ep.timeout_s:g} s"
            ) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise RisUnavailable(
                f"the {ep.name} engine at {ep.base_url} is unreachable ({type(exc).__name__})"
            ) from None
        except aiohttp.ClientPayloadError:
            raise RisUnavailable(
                f"the {ep.name} engine dropped the connection in the middle of its answer to {call}"
            ) from None
        except aiohttp.ClientError as exc:  # malformed status line or headers, and the rest
            raise RisFailed(
                f"the {ep.name} engine answered {call} with a malformed HTTP response "
                f"({type(exc).__name__})"
            ) from None

    async def _bounded_body(self, call: Call, response: aiohttp.ClientResponse) -> bytes:
        limit = self.endpoint.max_response_bytes
        too_big = RisFailed(
            f"the {self.endpoint.name} engine answered {call} with more than {limit} bytes "
            "(RADSCHED_REST_MAX_RESPONSE_BYTES)"
        )
        declared = response.content_length
        if declared is not None and declared > limit:
            raise too_big
        buf = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            buf += chunk
            if len(buf) > limit:
                raise too_big
        return bytes(buf)

    def _answer(self, call: Call, status: int, content_type: str, raw: bytes, shape: type[M]) -> M:
        name = self.endpoint.name
        if 200 <= status < 300:
            if content_type != "application/json":
                raise RisFailed(
                    f"the {name} engine answered {call} with {status} {content_type or 'no type'}, "
                    "not JSON"
                )
            try:
                return shape.model_validate(json.loads(raw))
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, ValidationError
                raise RisFailed(
                    f"the {name} engine's answer to {call} is not the documented shape: {_why(exc)}"
                ) from None
        code = _error_code(content_type, raw)
        where = f"the {name} engine answered {call} with {status}" + (f" ({code})" if code else "")
        if 300 <= status < 400:
            raise RisFailed(f"{where}, a redirect (not followed: check {self.endpoint.setting})")
        if status in (401, 403):
            raise RisFailed(
                f"{where}: it refused RADSCHED_{name.upper()}_API_KEY "
                f"(sent in {self.endpoint.api_key_header})"
            )
        if status == 404:
            if call == "book-appointment" and code != "unknown_location":
                raise UnknownOrder(where)
            raise UnknownLocation(where)
        if status == 409:
            raise SlotUnavailable(where)
        if status == 503:
            raise RisUnavailable(where)
        if status == 504:
            raise RisTimeout(where)
        raise RisFailed(where)


def _days(first: date, end: datetime, tz: tzinfo) -> int:
    """Whole local days from ``first`` that cover up to ``end``, within the channel's bound."""
    span = end - datetime.combine(first, time(0), tzinfo=tz)
    return max(1, min(MAX_DAYS, math.ceil(span / timedelta(days=1))))


def _error_code(content_type: str, raw: bytes) -> str:
    """The ``error.code`` of a JSON error body, if it is one and the code looks like a code."""
    if content_type != "application/json":
        return ""
    try:
        code = json.loads(raw)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return ""
    if (
        isinstance(code, str)
        and 0 < len(code) <= _ERROR_CODE_MAX
        and code.replace("_", "").isalnum()
    ):
        return code
    return ""


def _why(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        return f"{where}: {err['msg']}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return "not valid JSON"


# ---- the scheduling interface over REST --------------------------------------------------------------


class RestScheduling:
    """The SMS engine's scheduling service when ``SCHEDULING_BACKEND=rest``.

    Offers what the conversation driver calls on the HL7 service (``reachable``, ``locations``,
    ``slots``, ``book``) with the same errors. Booking state lives with the engine: it keeps the booking
    idempotent and sends the SIU; here nothing is stored.
    """

    def __init__(self, client: RestEngineClient) -> None:
        self._client = client
        self._base = client.endpoint.base_url
        # Names for the confirmation text: the booking answer carries only the location id.
        self._names: dict[str, Location] = {}

    @property
    def reachable(self) -> bool:
        return self._client.reachable

    async def locations(self, modality: str) -> list[Location]:
        code = modality.strip().upper()
        found = [
            loc
            for loc in await self._client.locations(code)
            if not loc.modalities or code in loc.modalities
        ]
        self._names.update((loc.id, loc) for loc in found)
        return found

    async def slots(
        self,
        location_id: str,
        modality: str,
        *,
        start: datetime,
        end: datetime,
        limit: int | None = None,
    ) -> list[Slot]:
        code = modality.strip().upper()
        found = await self._client.slots(location_id, code, start=start, end=end, limit=limit)
        # An engine that leaves out the filter still answers for the location asked.
        return [s for s in found if s.location_id == location_id and s.modality == code]

    async def book(self, request: BookingInput) -> BookedAppointment:
        try:
            booked = await self._client.book(
                order_id=request.order_id,
                mrn=request.mrn,
                modality=request.modality.strip().upper(),
                location_id=request.location_id,
                slot_id=request.slot_id,
            )
        except (RisTimeout, RisUnavailable, RisFailed):
            # The engine may have booked it; the same request again gets its answer (a radsched
            # gateway replays it). Until then the patient is on the RIS-down path: staff follow up.
            log.warning(
                "booking outcome unknown: the scheduling engine gave no usable answer",
                extra={"slot": request.slot_id, "location": request.location_id},
            )
            raise
        location = self._names.get(request.location_id) or Location(
            request.location_id, "", "", (booked.slot.modality,)
        )
        order = channels.OrderRef(order_id=request.order_id, mrn=request.mrn)
        appointment = channels.Appointment(
            id=booked.appointment_id,
            order_id=request.order_id,
            slot=booked.slot,
            location=location,
            confirmation_code=booked.confirmation_code,
        )
        # The engine's appointment id is the identity; a stable UUID of it fills the HL7 path's field.
        booking_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self._base}#{booked.appointment_id}")
        return BookedAppointment(booking_id, order, None, appointment, replayed=False)
