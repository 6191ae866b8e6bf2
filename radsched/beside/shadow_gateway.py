"""Shadow mode in the gateway (``SHADOW_URL``): answer every read ourselves, ask the shadowed engine too,
and record where the two differ — the evidence for a cutover from QIE.

The answer a client gets is always our own and is never delayed by the shadow: the shadowed engine is
asked concurrently, and the comparison runs in the background after we have answered. A shadow that
fails or is slow is itself a recorded difference (``shadow_failed``), nothing more. Bookings go to exactly
one side (``SHADOW_BOOKINGS``): ``here`` books over our HL7 path, ``shadow`` forwards the booking to the
shadowed engine (which stays the system of record and sends its own SIU); the other side is told
nothing, so no appointment is ever made twice.

Differences are counted per kind (``radsched_shadow_mismatches_total{kind}``), logged with ids only and
stored in ``shadow_mismatches`` for ``radsched shadow report``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter

from channels import Location, Slot
from radsched.beside.shadow import (
    KINDS,
    Call,
    Mismatch,
    compare_errors,
    compare_locations,
    compare_slots,
)
from radsched.scheduling.errors import SchedulingError
from radsched.scheduling.rest_backend import RestEngineClient, RestScheduling
from radsched.scheduling.service import BookedAppointment, BookingInput
from radsched.storage import shadow as shadow_sql
from radsched.storage.db import Database
from radsched.tasks import spawn

log = logging.getLogger("radsched.shadow")

__all__ = ["ShadowRecorder", "ShadowScheduling"]

#: Rows and log lines kept per comparison; the metric counts every mismatch.
MAX_RECORDED = 20
#: Comparisons waiting on the shadowed engine at once; beyond it reads are not shadowed (and counted
#: as ``skipped``), so a slow shadow cannot pile up sockets and tasks in the gateway.
MAX_IN_FLIGHT = 64
#: Mismatches older than this are deleted (at most once an hour, by the recording gateway).
KEEP = timedelta(days=90)
_PURGE_EVERY = timedelta(hours=1)

T = TypeVar("T")


class Scheduling(Protocol):
    """What the REST facade asks of a scheduling service (the HL7 one, or this wrapper)."""

    @property
    def reachable(self) -> bool: ...

    async def locations(self, modality: str) -> list[Location]: ...

    async def slots(
        self,
        location_id: str,
        modality: str,
        *,
        start: datetime,
        end: datetime,
        limit: int | None = None,
    ) -> list[Slot]: ...

    async def book(self, request: BookingInput) -> BookedAppointment: ...


class ShadowRecorder:
    """Counts, logs and stores mismatches. Never raises: shadow mode must not hurt the gateway."""

    def __init__(
        self,
        db: Database,
        registry: CollectorRegistry | None,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._clock = clock
        self._purged_at: datetime | None = None
        self.mismatches = Counter(
            "radsched_shadow_mismatches",
            "Differences between our answer and the shadowed engine's, by kind",
            ["kind"],
            registry=registry,
        )
        self.comparisons = Counter(
            "radsched_shadow_comparisons",
            "Reads compared with the shadowed engine, by call and outcome",
            ["call", "outcome"],
            registry=registry,
        )
        for kind in KINDS:
            self.mismatches.labels(kind)

    async def record(self, call: Call, outcome: str, found: Sequence[Mismatch]) -> None:
        self.comparisons.labels(call, outcome).inc()
        for mismatch in found:
            self.mismatches.labels(mismatch.kind).inc()
        kept = list(found[:MAX_RECORDED])
        for m in kept:
            log.info(
                "shadow mismatch",
                extra={
                    "kind": m.kind,
                    "call": m.call,
                    "modality": m.modality,
                    "location": m.location_id,
                    "slot_start": m.slot_start.isoformat() if m.slot_start else "",
                    "here_id": m.here_id,
                    "shadow_id": m.shadow_id,
                    "detail": m.detail,
                },
            )
        if len(found) > len(kept):
            log.info(
                "shadow mismatches not recorded one by one", extra={"more": len(found) - len(kept)}
            )
        if not kept:
            return
        now = self._clock()
        try:
            async with self._db.transaction("shadow.record") as conn:
                await shadow_sql.record(conn, kept, now)
                if self._purged_at is None or now - self._purged_at > _PURGE_EVERY:
                    await shadow_sql.purge_before(conn, now - KEEP)
                    self._purged_at = now
        except Exception:
            log.exception("recording shadow mismatches failed")


@dataclass(frozen=True, slots=True)
class _Question:
    call: Call
    modality: str
    location_id: str


class ShadowScheduling:
    """The gateway's scheduling service in shadow mode: ours for answers, both for comparison."""

    def __init__(
        self,
        here: Scheduling,
        shadow: RestEngineClient,
        recorder: ShadowRecorder,
        *,
        bookings: Literal["here", "shadow"] = "here",
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._max_in_flight = max_in_flight
        self._here = here
        self._shadow = shadow
        self._recorder = recorder
        self._bookings = bookings
        self._shadow_booking = RestScheduling(shadow)
        self._background: set[asyncio.Task[None]] = set()

    @property
    def reachable(self) -> bool:
        return self._here.reachable

    async def locations(self, modality: str) -> list[Location]:
        code = modality.strip().upper()
        return await self._both(
            _Question("locations", code, ""),
            lambda: self._here.locations(code),
            lambda: self._shadow.locations(code),
            lambda ours, theirs: compare_locations(
                code, ours, [loc for loc in theirs if not loc.modalities or code in loc.modalities]
            ),
        )

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
        return await self._both(
            _Question("available-slots", code, location_id),
            lambda: self._here.slots(location_id, code, start=start, end=end, limit=limit),
            lambda: self._shadow.slots(location_id, code, start=start, end=end, limit=limit),
            compare_slots,
        )

    async def book(self, request: BookingInput) -> BookedAppointment:
        if self._bookings == "shadow":
            return await self._shadow_booking.book(request)
        return await self._here.book(request)

    async def settled(self) -> None:
        """Wait for the comparisons started so far (tests, and a clean stop)."""
        await asyncio.gather(*self._background, return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _both(
        self,
        question: _Question,
        ours: Callable[[], Awaitable[list[T]]],
        theirs: Callable[[], Coroutine[Any, Any, list[T]]],
        compare: Callable[[list[T], list[T]], list[Mismatch]],
    ) -> list[T]:
        if len(self._background) >= self._max_in_flight:
            self._recorder.comparisons.labels(question.call, "skipped").inc()
            return await ours()
        asked = spawn(
            theirs(), name="shadow-ask", awaited=True
        )  # concurrently: the shadow must not add latency
        try:
            answer = await ours()
        except asyncio.CancelledError:  # the client went away: nothing to compare
            asked.cancel()
            raise
        except Exception as exc:
            code = exc.code if isinstance(exc, SchedulingError) else type(exc).__name__
            self._later(self._compare(question, None, code, asked, compare))
            raise
        self._later(self._compare(question, answer, None, asked, compare))
        return answer

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = spawn(work, name="shadow-compare")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _compare(
        self,
        question: _Question,
        answer: list[T] | None,
        here_error: str | None,
        asked: asyncio.Future[list[T]],
        compare: Callable[[list[T], list[T]], list[Mismatch]],
    ) -> None:
        try:
            theirs = await asked  # bounded by SHADOW_TIMEOUT_S inside the client
            shadow_error = None
        except SchedulingError as exc:
            theirs, shadow_error = [], exc.code
        except Exception as exc:  # a bug in the shadow path is a shadow failure, nothing more
            log.exception("asking the shadowed engine failed unexpectedly")
            theirs, shadow_error = [], type(exc).__name__
        try:
            if here_error or shadow_error:
                found = compare_errors(
                    question.call,
                    question.modality,
                    question.location_id,
                    here_error=here_error,
                    shadow_error=shadow_error,
                )
                outcome: str = "both_failed" if here_error and shadow_error else found[0].kind
            else:
                assert answer is not None
                found = compare(answer, theirs)
                outcome = "different" if found else "same"
            await self._recorder.record(question.call, outcome, found)
        except Exception:
            log.exception("comparing with the shadowed engine failed")
