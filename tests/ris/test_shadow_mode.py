"""Shadow mode: our gateway answers, a second gateway (the engine being replaced) is asked too.

Two real daemons on one database, each over its own simulated RIS; the shadowed one has one slot taken
that ours still offers. The comparison finds exactly that slot, of the right kind; the answer is ours and
is unaffected when the shadow fails; a booking is made on exactly one side; ``radsched shadow report``
shows it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from radsched.beside.shadow_gateway import ShadowRecorder, ShadowScheduling
from radsched.daemon import running
from radsched.rest.scheduling import add_routes
from radsched.scheduling.rest_backend import EngineEndpoint, RestEngineClient
from radsched.scheduling.service import BookingInput
from radsched.simris import SimRis, default_calendar
from radsched.simris.calendar import Booking
from radsched.storage import shadow as shadow_sql
from radsched.storage.db import Database
from tests.conftest import private_tmp
from tests.ris.conftest import (
    DAY,
    HASH_KEY,
    KEYS,
    NOW,
    PHI_KEY,
    Gateway,
    GatewayFactory,
    fixed_clock,
    settings_for,
)
from tests.waiting import eventually

NY = ZoneInfo("America/New_York")
TAKEN = "DTWN-CT-202611301000"  # 10:00 in New York, booked on the shadowed engine's RIS only


@asynccontextmanager
async def sim_ris(*, taken: str | None = None) -> AsyncIterator[SimRis]:
    ris = SimRis(default_calendar(clock=fixed_clock))
    if taken:
        slot = ris.calendar.find(taken)
        assert slot is not None
        ris.calendar.bookings[taken] = Booking(slot, "SIM-OTHER", "OTHER", "OTHER-ORDER")
    await ris.start()
    try:
        yield ris
    finally:
        await ris.aclose()


@asynccontextmanager
async def shadowed_pair(
    gateway: GatewayFactory,
    database_url: str,
    *,
    bookings: Literal["here", "shadow"] = "here",
    shadow_base: str | None = None,
    max_in_flight: int = 64,
) -> AsyncIterator[tuple[Gateway, SimRis, SimRis, ShadowScheduling, CollectorRegistry, str]]:
    """Ours over sim A; the shadowed gateway over sim B (one slot taken); ShadowScheduling over both."""
    other_dir = private_tmp("radsched-shadowed-")
    async with (
        sim_ris() as ours_ris,
        sim_ris(taken=TAKEN) as theirs_ris,
        gateway(ris_addr=f"127.0.0.1:{ours_ris.port}", clock=fixed_clock) as ours,
        running(
            settings_for(other_dir, database_url, ris_addr=f"127.0.0.1:{theirs_ris.port}"),
            clock=fixed_clock,
        ) as theirs,
    ):
        http = theirs.listening["http"]
        endpoint = EngineEndpoint(
            "shadow", (shadow_base or f"http://{http}") + "/api/ris", KEYS[1], timeout_s=2.0
        )
        client = RestEngineClient(endpoint, tz=NY, read_retries=0)
        registry = CollectorRegistry()
        recorder = ShadowRecorder(ours.daemon.db, registry, clock=fixed_clock)
        service = ShadowScheduling(
            ours.daemon.scheduling, client, recorder, bookings=bookings, max_in_flight=max_in_flight
        )
        try:
            yield ours, ours_ris, theirs_ris, service, registry, ours.daemon.dsn
        finally:
            await service.aclose()
            await client.aclose()


async def mismatches(db: Database) -> list[shadow_sql.KindSummary]:
    async with db.transaction("test.shadow") as conn:
        return await shadow_sql.summary(conn, NOW - timedelta(days=1))


def count(registry: CollectorRegistry, kind: str) -> float:
    value = registry.get_sample_value("radsched_shadow_mismatches_total", {"kind": kind})
    return value or 0.0


async def test_one_slot_different_is_one_mismatch_of_the_right_kind(
    gateway: GatewayFactory, database_url: str
) -> None:
    async with shadowed_pair(gateway, database_url) as (
        ours,
        ours_ris,
        _theirs_ris,
        service,
        registry,
        _,
    ):
        # Through the REST facade, as the SMS scheduler would ask it.
        app = web.Application()
        add_routes(app, service, KEYS, NY)  # type: ignore[arg-type]
        async with _serve(app) as base, aiohttp.ClientSession() as http:
            params = {"location": "DTWN", "modality": "CT", "date": DAY}
            headers = {"X-API-Key": KEYS[0]}
            async with http.get(
                base + "/api/ris/available-slots", params=params, headers=headers
            ) as response:
                assert response.status == 200
                answered = (await response.json())["slots"]
            async with http.get(
                base + "/api/ris/locations", params={"modality": "CT"}, headers=headers
            ) as response:
                assert response.status == 200
        await service.settled()

        assert TAKEN in [s["id"] for s in answered]  # the answer is ours, taken slot and all
        assert len(answered) == 18
        (row,) = await mismatches(ours.daemon.db)
        assert (row.kind, row.count) == ("slot_only_here", 1)
        (example,) = row.examples
        assert example.here_id == TAKEN and example.shadow_id == ""
        assert example.slot_start == NOW.replace(hour=15)  # 10:00 New York
        assert (example.location_id, example.modality, example.call) == (
            "DTWN",
            "CT",
            "available-slots",
        )
        assert count(registry, "slot_only_here") == 1
        assert count(registry, "location_only_here") == 0  # the locations agreed
        assert (
            registry.get_sample_value(
                "radsched_shadow_comparisons_total", {"call": "locations", "outcome": "same"}
            )
            == 1
        )
        assert not ours_ris.calendar.bookings  # reads only

        # The operator's view of the same run.
        environment = {
            "RADSCHED_DATABASE_URL": ours.daemon.dsn,
            "RADSCHED_PHONE_HASH_KEY": HASH_KEY,
            "RADSCHED_PHI_KEY": PHI_KEY,
            "RADSCHED_DATA_DIR": str(private_tmp("radsched-cli-")),
            "PATH": "/usr/bin:/bin",
        }

        def report(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "radsched", "shadow", "report", *args],
                env=environment,
                capture_output=True,
                text=True,
                timeout=60,
            )

        # One after the other: they share DATA_DIR, whose writability probe is not made for two at once.
        table = await asyncio.to_thread(report, "--since", "2026-11-01")
        as_json = await asyncio.to_thread(report, "--since", "2026-11-01", "--json")
        assert table.returncode == 0, table.stderr
        assert "slot_only_here" in table.stdout and TAKEN in table.stdout
        kinds = json.loads(as_json.stdout)["kinds"]
        assert [(k["kind"], k["count"]) for k in kinds] == [("slot_only_here", 1)]


async def test_bookings_go_to_exactly_one_side(gateway: GatewayFactory, database_url: str) -> None:
    for side in ("here", "shadow"):
        request = BookingInput(
            f"PLC-{side}", "MRN00001", "DTWN-CT-202611301100", "DTWN", "CT", source="rest"
        )
        async with shadowed_pair(gateway, database_url, bookings=side) as (
            ours,
            ours_ris,
            theirs_ris,
            service,
            *_,
        ):
            await ours.add_order(f"PLC-{side}")  # one database: both gateways know the order
            await service.locations("CT")
            booked = await service.book(request)
            again = await service.book(request)
            assert again.appointment.confirmation_code == booked.appointment.confirmation_code
            booked_here, booked_there = (
                len(ours_ris.calendar.bookings),
                len(theirs_ris.calendar.bookings) - 1,
            )
            assert (booked_here, booked_there) == ((1, 0) if side == "here" else (0, 1)), side


async def test_a_failing_shadow_never_changes_the_answer(
    gateway: GatewayFactory, database_url: str
) -> None:
    # Nobody listens at the shadow's address: every comparison is a shadow failure, every answer ours.
    async with shadowed_pair(gateway, database_url, shadow_base="http://127.0.0.1:9") as (
        ours,
        _ours_ris,
        _theirs_ris,
        service,
        registry,
        _,
    ):
        start = NOW
        got = await service.slots("DTWN", "CT", start=start, end=start + timedelta(days=1))
        expected = await ours.daemon.scheduling.slots(
            "DTWN", "CT", start=start, end=start + timedelta(days=1)
        )
        assert got == expected and got
        assert [loc.id for loc in await service.locations("CT")] == ["DTWN", "NRTH"]
        await service.settled()
        (row,) = await mismatches(ours.daemon.db)
        assert (row.kind, row.count) == ("shadow_failed", 2)
        assert {m.detail for m in row.examples} == {"ris_unavailable"}
        assert count(registry, "shadow_failed") == 2


async def test_a_slow_shadow_never_delays_the_answer(
    gateway: GatewayFactory, database_url: str
) -> None:
    release = asyncio.Event()

    async def silent(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(text="{}")  # and then not even JSON

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", silent)
    async with (
        _serve(app) as slow_base,
        shadowed_pair(gateway, database_url, shadow_base=slow_base, max_in_flight=2) as (
            ours,
            _ours_ris,
            _theirs_ris,
            service,
            registry,
            _,
        ),
    ):
        for _ in range(3):  # answered while the shadow has not answered anything
            assert [loc.id for loc in await service.locations("CT")] == ["DTWN", "NRTH"]
        skipped = {"call": "locations", "outcome": "skipped"}
        assert registry.get_sample_value("radsched_shadow_comparisons_total", skipped) == 1
        release.set()
        await service.settled()
        (row,) = await mismatches(ours.daemon.db)
        assert (row.kind, row.count) == ("shadow_failed", 2)
        assert {m.detail for m in row.examples} == {"ris_error"}


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_shadow_url_makes_the_daemon_compare_its_own_answers(
    gateway: GatewayFactory, database_url: str
) -> None:
    """The composition root wires SHADOW_URL: the daemon's own facade answers and compares."""
    other_dir = private_tmp("radsched-shadowed-")
    async with (
        sim_ris() as ours_ris,
        sim_ris(taken=TAKEN) as theirs_ris,
        running(
            settings_for(other_dir, database_url, ris_addr=f"127.0.0.1:{theirs_ris.port}"),
            clock=fixed_clock,
        ) as theirs,
        gateway(
            ris_addr=f"127.0.0.1:{ours_ris.port}",
            clock=fixed_clock,
            shadow_url=f"http://{theirs.listening['http']}/api/ris",
            shadow_api_key=KEYS[1],
        ) as ours,
    ):
        status, body = await ours.call(
            "GET",
            "/api/ris/available-slots",
            params={"location": "DTWN", "modality": "CT", "date": DAY},
        )
        assert status == 200 and TAKEN in [s["id"] for s in body["slots"]]

        async def recorded() -> bool:  # the comparison runs after the answer, off its path
            return bool(await mismatches(ours.daemon.db))

        await eventually(recorded, what="the shadow comparison recorded")
        (row,) = await mismatches(ours.daemon.db)
        assert (row.kind, row.count) == ("slot_only_here", 1)
        # reads only: the shadowed RIS holds just the booking it was seeded with
        assert not ours_ris.calendar.bookings and list(theirs_ris.calendar.bookings) == [TAKEN]
