"""The REST scheduling backend against an engine that misbehaves, on a real loopback HTTP server.

Each way an engine (or a proxy in front of it) can fail ends in a bounded, clear scheduling error of the
kind the conversation already handles: garbage, HTML error pages, bodies that never finish, redirects,
huge answers, refusals, dropped connections. Nothing waits longer than the configured deadline.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from radsched.conversation.model import Book, FetchLocations, RisDown, State
from radsched.scheduling.errors import (
    RisFailed,
    RisTimeout,
    RisUnavailable,
    SchedulingError,
    SlotUnavailable,
)
from radsched.scheduling.rest_backend import (
    EngineEndpoint,
    RestEngineClient,
    RestMetrics,
    RestScheduling,
    _Slots,
)
from radsched.scheduling.service import BookingInput
from radsched.sms.driver import PendingCall
from radsched.sms.ris_calls import RisCaller

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FaultyEngine:
    """A loopback engine whose every answer is ``handler``; counts what reached it."""

    handler: Handler
    hits: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(f"{request.method} {request.path}")
        return await self.handler(request)


@pytest.fixture
async def engine() -> AsyncIterator[tuple[FaultyEngine, str]]:
    async def unset(request: web.Request) -> web.StreamResponse:
        raise AssertionError("the test sets a handler")

    faulty = FaultyEngine(unset)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", faulty.dispatch)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield faulty, f"http://127.0.0.1:{port}/api/ris"
    faulty.release.set()
    await runner.cleanup()


def client(base: str, *, timeout_s: float = 0.5, max_bytes: int = 4096) -> RestEngineClient:
    endpoint = EngineEndpoint(
        "scheduling", base, "key-0123456789", timeout_s=timeout_s, max_response_bytes=max_bytes
    )
    return RestEngineClient(endpoint, tz=NY, retry_delay_s=0.0, metrics=RestMetrics(None))


def answer(status: int, body: object, content_type: str = "application/json") -> Handler:
    text = body if isinstance(body, str) else json.dumps(body)

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=text, content_type=content_type)

    return handle


HTML = "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
SLOT = {
    "id": "S1",
    "location": "DTWN",
    "modality": "CT",
    "start": "2026-11-30T09:00:00-05:00",
    "duration_minutes": 30,
}
BOOKING = BookingInput("PLC1", "MRN00001", "S1", "DTWN", "CT", source="sms")


@pytest.mark.parametrize(
    ("handler", "error", "words"),
    [
        (answer(200, "{not json", "application/json"), RisFailed, "not valid JSON"),
        (answer(200, {"locations": [{"name": "x"}]}), RisFailed, "locations.0.id"),
        (answer(200, {"locations": "all of them"}), RisFailed, "documented shape"),
        (answer(200, HTML, "text/html"), RisFailed, "text/html, not JSON"),
        (answer(500, HTML, "text/html"), RisFailed, "with 500"),
        (answer(502, HTML, "text/html"), RisFailed, "with 502"),
        (
            answer(503, {"error": {"code": "ris_unavailable", "message": "x"}}),
            RisUnavailable,
            r"503 \(ris_unavailable\)",
        ),
        (answer(504, HTML, "text/html"), RisTimeout, "with 504"),
        (
            answer(401, {"error": {"code": "unauthorized", "message": "x"}}),
            RisFailed,
            "RADSCHED_SCHEDULING_API_KEY",
        ),
        (answer(418, "teapot", "text/plain"), RisFailed, "with 418"),
    ],
)
async def test_bad_answers_to_a_read(
    engine: tuple[FaultyEngine, str],
    handler: Handler,
    error: type[SchedulingError],
    words: str,
) -> None:
    faulty, base = engine
    faulty.handler = handler
    rest = client(base)
    try:
        with pytest.raises(error, match=words) as info:
            await rest.locations("CT")
        assert type(info.value) is error
        assert "\n" not in info.value.message
    finally:
        await rest.aclose()


async def test_reads_are_retried_once_after_503_a_booking_never(
    engine: tuple[FaultyEngine, str],
) -> None:
    faulty, base = engine
    faulty.handler = answer(503, HTML, "text/html")
    rest = client(base)
    try:
        with pytest.raises(RisUnavailable):
            await rest.locations("CT")
        assert faulty.hits == ["GET /api/ris/locations"] * 2
        faulty.hits.clear()
        with pytest.raises(RisUnavailable):
            await RestScheduling(rest).book(BOOKING)
        assert faulty.hits == ["POST /api/ris/book-appointment"]
    finally:
        await rest.aclose()


async def test_a_taken_slot_is_409(engine: tuple[FaultyEngine, str]) -> None:
    faulty, base = engine
    faulty.handler = answer(409, {"error": {"code": "slot_unavailable", "message": "MRN00001"}})
    rest = client(base)
    try:
        with pytest.raises(SlotUnavailable) as info:
            await RestScheduling(rest).book(BOOKING)
        assert "MRN00001" not in str(info.value)  # the engine's own message is not repeated
    finally:
        await rest.aclose()


async def test_a_redirect_is_not_followed(engine: tuple[FaultyEngine, str]) -> None:
    faulty, base = engine

    async def moved(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/login"):
            return web.Response(text="login page")
        raise web.HTTPFound("/login?next=/api/ris/locations")

    faulty.handler = moved
    rest = client(base)
    try:
        with pytest.raises(RisFailed, match="redirect .*RADSCHED_SCHEDULING_URL"):
            await rest.locations("CT")
        assert faulty.hits == ["GET /api/ris/locations"]
    finally:
        await rest.aclose()


async def test_headers_that_never_come_and_bodies_that_never_end(
    engine: tuple[FaultyEngine, str],
) -> None:
    faulty, base = engine

    async def silent(request: web.Request) -> web.StreamResponse:
        await faulty.release.wait()
        return web.Response(text="{}")

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"slots": [')
        await faulty.release.wait()
        return response

    rest = client(base, timeout_s=0.3)
    try:
        for handler in (silent, trickle):
            faulty.handler = handler
            started = asyncio.get_running_loop().time()
            with pytest.raises(RisTimeout, match="within 0.3 s"):
                await rest.slots("DTWN", "CT", start=NOW, end=NOW + timedelta(days=1), limit=None)
            assert asyncio.get_running_loop().time() - started < 2.0
        assert not rest.reachable  # the conversation's next order goes to the call-us text at once
    finally:
        await rest.aclose()


async def test_huge_answers_are_refused(engine: tuple[FaultyEngine, str]) -> None:
    faulty, base = engine
    slots = {"slots": [SLOT] * 200}

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()  # no Content-Length to refuse up front
        await response.prepare(request)
        await response.write(json.dumps(slots).encode())
        return response

    rest = client(base, max_bytes=4096)
    try:
        for handler in (answer(200, slots), chunked):
            faulty.handler = handler
            with pytest.raises(RisFailed, match="more than 4096 bytes"):
                await rest.slots("DTWN", "CT", start=NOW, end=NOW + timedelta(days=1))
    finally:
        await rest.aclose()


async def test_a_connection_dropped_mid_answer(engine: tuple[FaultyEngine, str]) -> None:
    faulty, base = engine

    async def drop(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 2000
        await response.prepare(request)
        await response.write(b'{"slots": [')
        assert request.transport is not None
        request.transport.close()
        return response

    faulty.handler = drop
    rest = client(base)
    try:
        with pytest.raises(RisUnavailable):
            await rest.slots("DTWN", "CT", start=NOW, end=NOW + timedelta(days=1))
    finally:
        await rest.aclose()


async def test_nobody_listening() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rest = client(f"http://127.0.0.1:{port}/api/ris")
    try:
        with pytest.raises(RisUnavailable, match="unreachable"):
            await rest.locations("CT")
        assert not rest.reachable
    finally:
        await rest.aclose()


@pytest.mark.parametrize(
    "handler",
    [
        answer(200, "<html>maintenance</html>", "text/html"),
        answer(500, "oops", "text/plain"),
        answer(200, {"status": "booked"}),  # no confirmation code
    ],
)
async def test_the_patient_is_never_left_waiting(
    engine: tuple[FaultyEngine, str], handler: Handler
) -> None:
    """Whatever the engine does, the conversation gets the RIS-down event (the call-us text)."""
    faulty, base = engine
    faulty.handler = handler
    rest = client(base)
    caller = RisCaller(lambda: RestScheduling(rest), clock=lambda: NOW)  # type: ignore[arg-type, return-value]
    try:
        for command in (FetchLocations("CT"), Book("S1", "DTWN", "CT")):
            call = PendingCall(
                conversation_id=uuid.uuid4(),
                command=command,
                state=State.LOADING_LOCATIONS,
                busy_until=None,
                order_id="PLC1",
                mrn="MRN00001",
                correlation_id="test",
            )
            assert isinstance(await caller.answer(call), RisDown)
    finally:
        await rest.aclose()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
contract_like = st.fixed_dictionaries(
    {
        "slots": st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.text(max_size=70),
                    "location": st.text(max_size=8),
                    "modality": st.text(max_size=4),
                    "start": st.text(max_size=30) | st.just("2026-11-30T09:00:00-05:00"),
                    "duration_minutes": st.integers(-5, 2000) | st.text(max_size=3),
                }
            ),
            max_size=3,
        )
    }
)


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from([200, 201, 204, 301, 400, 401, 404, 409, 418, 500, 502, 503, 504]),
    content_type=st.sampled_from(["application/json", "text/html", "", "application/problem+json"]),
    body=st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | contract_like.map(lambda v: json.dumps(v).encode()),
)
def test_any_answer_is_a_slot_list_or_a_clear_error(
    status: int, content_type: str, body: bytes
) -> None:
    """Parsing an engine's answer: the documented shape, or one scheduling error of one line."""
    rest = client("http://127.0.0.1:9/api/ris")
    try:
        parsed = rest._answer("available-slots", status, content_type, body, _Slots)
    except SchedulingError as exc:
        assert "\n" not in exc.message and len(exc.message) < 400
    else:
        assert 200 <= status < 300 and content_type == "application/json"
        assert all(s.start.tzinfo is not None and s.duration_minutes >= 1 for s in parsed.slots)


async def test_an_engine_that_answers_one_date_at_a_time(engine: tuple[FaultyEngine, str]) -> None:
    """The source design's channel has no ``days``: such an engine is asked day by day, until enough."""
    faulty, base = engine

    async def per_day(request: web.Request) -> web.StreamResponse:
        day = request.query["date"]  # ``days`` ignored, as QIE's channel does
        weekday = datetime.fromisoformat(day).weekday()
        slots = [
            {**SLOT, "id": f"{day}-{hh}", "start": f"{day}T{hh}:00:00-05:00"}
            for hh in ("09", "10")
            if weekday < 5
        ]
        return web.json_response({"slots": slots})

    faulty.handler = per_day
    rest = client(base)
    friday_noon = datetime(
        2026, 12, 4, 17, 0, tzinfo=UTC
    )  # 12:00 in New York: the day's slots are past
    try:
        got = await rest.slots(
            "DTWN", "CT", start=friday_noon, end=friday_noon + timedelta(days=21), limit=3
        )
        assert [s.id for s in got] == ["2026-12-07-09", "2026-12-07-10", "2026-12-08-09"]
        # Friday (past), Saturday and Sunday (none), Monday, Tuesday: five calls, then enough.
        assert faulty.hits == ["GET /api/ris/available-slots"] * 5
    finally:
        await rest.aclose()
